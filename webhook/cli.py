"""`mlgate serve | check | certs | policies | audit`: one command, thin wrappers."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from webhook import certs, config, docs, dra, engine, errors, logs, plugins
from webhook.audit import client as audit_client

EXIT_OK, EXIT_DENIED, EXIT_USAGE = 0, 1, 2
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _fail(message: str) -> int:
    print(f"mlgate: {message}", file=sys.stderr)
    return EXIT_USAGE


# -- serve ---------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from webhook import server
    from webhook.runtime import Runtime

    logs.configure(args.log_level)
    runtime = Runtime(args.config)
    try:
        runtime.load()
    except errors.ConfigError as exc:
        return _fail(f"cannot start: {exc}")
    manager = None
    if args.self_signed:
        from webhook import selfsigned

        try:
            manager = selfsigned.from_args(args)
        except ValueError as exc:
            return _fail(str(exc))
        cert = key = manager.pem_file
    else:
        cert, key = server.resolve_tls_files(args.tls_cert, args.tls_key, args.certs_dir)
    services = [manager.renewal(args.renew_check_interval)] if manager is not None else []
    uv = server.build(runtime, cert, key, args.host, args.port, client_ca=args.client_ca,
                      log_level=args.log_level, data_dir=args.data_dir, services=services,
                      health_port=args.health_port)
    server.serve(uv, args.workers)
    return EXIT_OK


# -- check ---------------------------------------------------------------------------
def _manifest_files(paths: list[str]) -> Iterator[Path]:
    for name in paths:
        path = Path(name)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES)
        elif path.exists() or name == "-":
            yield path
        else:
            raise errors.ConfigError(f"{name}: no such file or directory")


def _documents(path: Path, text: str) -> list[Any]:
    # JSON first: it may hold tabs, which YAML (JSON's superset otherwise) refuses.
    if path.suffix == ".json" or text.lstrip().startswith(("{", "[")):
        try:
            return [json.loads(text)]
        except ValueError:
            pass
    try:
        return list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise errors.ConfigError(f"{path}: not valid YAML or JSON: {exc}") from exc


def _unwrap(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The object of an AdmissionReview, or of a bare AdmissionRequest (test fixtures)."""
    request = doc.get("request") if doc.get("kind") == "AdmissionReview" else (
        doc if "uid" in doc and "operation" in doc and "kind" in doc else None)
    if request is None:
        return doc
    obj = request.get("object") if isinstance(request, dict) else None
    return obj if isinstance(obj, dict) else None


def load_manifests(path: Path) -> list[dict[str, Any]]:
    """Every object in a YAML (multi-document) or JSON file: `List` items are expanded, and
    AdmissionReviews (or bare AdmissionRequests) give their `object`."""
    text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    objects: list[dict[str, Any]] = []
    for index, doc in enumerate(_documents(path, text)):
        if doc is None:
            continue  # empty documents (a trailing `---`, comments only)
        if not isinstance(doc, dict):
            raise errors.ConfigError(f"{path}: document {index + 1} is not a mapping")
        if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
            objects.extend(item for item in doc["items"] if isinstance(item, dict))
        elif (obj := _unwrap(doc)) is not None:
            objects.append(obj)
    return objects


def _describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name") or meta.get("generateName") or "(unnamed)"
    return f"{obj.get('kind', '?')} {name}"


async def _check(eng: engine.Engine, files: list[Path], namespace: str) -> list[dict[str, Any]]:
    results = []
    loaded = [(path, load_manifests(path)) for path in files]
    # Pods name their claims and claim templates: look them up among every object given.
    claims = dra.Manifests((obj for _, objects in loaded for obj in objects), namespace)
    for path, objects in loaded:
        for obj in objects:
            mutated, validated, _ = await eng.check(obj, namespace, claims)
            skipped = validated.skipped or mutated.skipped
            allowed = mutated.allowed and validated.allowed
            results.append({
                "file": str(path), "resource": _describe(obj),
                "verdict": "skipped" if skipped else ("allowed" if allowed else "denied"),
                "skipped": skipped,
                "violations": [f.message for f in mutated.findings + validated.findings
                               if f.mode == "enforce" and not f.preexisting
                               and not f.exception],
                "warnings": mutated.warnings + validated.warnings,
                "patch": mutated.patch,
                "mutated_by": mutated.mutated_by,
                "exceptions": [_exception(eng, name) for name in dict.fromkeys(
                    mutated.exceptions + validated.exceptions)],
            })
    return results


def _exception(eng: engine.Engine, name: str) -> dict[str, str]:
    entry = eng.config.exceptions[name]
    return {"name": name, "owner": entry.owner, "expires": entry.until, "reason": entry.reason}


def cmd_check(args: argparse.Namespace) -> int:
    try:
        eng = engine.Engine.build(config.load(args.config))
        files = list(_manifest_files(args.file))
        results = asyncio.run(_check(eng, files, args.namespace))
    except errors.ConfigError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename}: {exc.strerror}")
    if args.output == "json":
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            line = f"{result['file']}: {result['resource']}: {result['verdict'].upper()}"
            if result["skipped"]:
                line += f" ({result['skipped']})"
            print(line)
            for violation in result["violations"]:
                print(f"  deny: {violation}")
            for warning in result["warnings"]:
                print(f"  warn: {warning}")
            for used in result["exceptions"]:
                print(f"  exception {used['name']} (owner {used['owner']}, expires "
                      f"{used['expires']}): {used['reason']}")
            if result["patch"]:
                print(f"  patch ({', '.join(result['mutated_by'])}):")
                for op in result["patch"]:
                    value = f" {json.dumps(op['value'])}" if "value" in op else ""
                    print(f"    {op['op']} {op['path']}{value}")
        denied = sum(r["verdict"] == "denied" for r in results)
        print(f"{len(results)} resources: {denied} denied, "
              f"{sum(r['verdict'] == 'allowed' for r in results)} allowed, "
              f"{sum(r['verdict'] == 'skipped' for r in results)} skipped")
    return EXIT_DENIED if any(r["verdict"] == "denied" for r in results) else EXIT_OK


# -- certs ---------------------------------------------------------------------------
def cmd_certs_generate(args: argparse.Namespace) -> int:
    bundle = certs.generate(args.service, args.namespace, days=args.days)
    paths = certs.write(bundle, args.out)
    for name, path in paths.items():
        print(f"wrote {path}" + (" (keep it secret)" if name.endswith(".key") else ""))
    return EXIT_OK


def cmd_certs_inject_ca(args: argparse.Namespace) -> int:
    if not (args.mutating or args.validating):
        return _fail("certs inject-ca: name at least one --mutating or --validating "
                     "webhook configuration")
    try:
        ca_pem = Path(args.ca_file).read_bytes()
    except OSError as exc:
        return _fail(f"certs inject-ca: cannot read --ca-file {args.ca_file}: {exc.strerror}")
    try:
        changed = certs.inject_ca(certs.api_client(args.kubeconfig), ca_pem, args.mutating,
                                  args.validating, merge=args.keep_existing)
    except certs.InjectionError as exc:
        return _fail(f"certs inject-ca: {exc}")
    for name in args.mutating:
        state = "patched" if f"{certs.MUTATING}/{name}" in changed else "already current"
        print(f"{certs.MUTATING} {name}: {state}")
    for name in args.validating:
        state = "patched" if f"{certs.VALIDATING}/{name}" in changed else "already current"
        print(f"{certs.VALIDATING} {name}: {state}")
    return EXIT_OK


# -- policies ------------------------------------------------------------------------
def cmd_policies_list(args: argparse.Namespace) -> int:
    try:
        cfg = config.load(args.config)
        catalogue = plugins.discover(cfg.policyPaths)
        eng = engine.Engine.build(cfg, catalogue)
    except errors.ConfigError as exc:
        return _fail(str(exc))
    active = {p.name: p for p in eng.active}
    rows = []
    for name in sorted(set(catalogue.policies) | set(active)):
        entry = active.get(name)
        uses = entry.settings.uses if entry is not None else None
        cls = catalogue.policies[uses or name]
        source = f"uses {uses}" if uses else catalogue.sources[name]
        rows.append({"name": name, "phase": cls.phase, "mode": entry.mode if entry else "off",
                     "source": source,
                     "params": entry.policy.params.model_dump(mode="json") if entry else {}})
    if args.output == "json":
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    width = max((len(r["name"]) for r in rows), default=4)
    print(f"{'POLICY':<{width}}  PHASE     MODE     PARAMS")
    for row in rows:
        params = json.dumps(row["params"], separators=(",", ":")) if row["params"] else "-"
        print(f"{row['name']:<{width}}  {row['phase']:<8}  {row['mode']:<7}  {params}")
    for name, reason in catalogue.failures.items():
        print(f"failed to load {name}: {reason}", file=sys.stderr)
    return EXIT_OK


def cmd_policies_docs(args: argparse.Namespace) -> int:
    catalogue = plugins.discover()
    sys.stdout.write(docs.render(catalogue))
    for name, reason in catalogue.failures.items():
        print(f"failed to load {name}: {reason}", file=sys.stderr)
    return EXIT_OK


# -- parser --------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="mlgate", description="Admission webhook for ML workloads")
    sub = root.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the webhook server (HTTPS)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--health-port", type=int, default=None,
                       help="also serve /healthz, /readyz and /metrics over plain HTTP on this "
                            "port, apart from admission (the chart's probes use it)")
    serve.add_argument("--config", default=None, help="mlgate.yaml (default: built-in defaults)")
    serve.add_argument("--tls-cert", default=None)
    serve.add_argument("--tls-key", default=None)
    serve.add_argument("--certs-dir", default="certs",
                       help="where development certificates are made when no TLS files are given")
    serve.add_argument("--client-ca", default=None,
                       help="require client certificates signed by this CA (mTLS)")
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--data-dir", default=os.environ.get("MLGATE_DATA_DIR", ".mlgate"),
                       help="where the SQLite decision journal lives (default ./.mlgate/)")
    serve.add_argument("--log-level", default="info",
                       choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(func=cmd_serve)
    from webhook import selfsigned

    selfsigned.add_arguments(serve)

    check = sub.add_parser("check", help="run the policies on manifests, offline")
    check.add_argument("-f", "--file", action="append", required=True,
                       help="a manifest file or directory (repeatable; - for stdin)")
    check.add_argument("--config", default=None)
    check.add_argument("--namespace", default="default",
                       help="namespace for manifests that name none")
    check.add_argument("--output", "-o", choices=["text", "json"], default="text")
    check.set_defaults(func=cmd_check)

    from webhook import policytests

    policytests.add_arguments(sub)

    certs_cmd = sub.add_parser("certs", help="development certificates")
    certs_sub = certs_cmd.add_subparsers(dest="certs_command", required=True)
    generate = certs_sub.add_parser("generate", help="write a CA and a serving certificate")
    generate.add_argument("--service", default="mlgate")
    generate.add_argument("--namespace", default="mlgate-system")
    generate.add_argument("--out", default="certs")
    generate.add_argument("--days", type=int, default=365)
    generate.set_defaults(func=cmd_certs_generate)
    inject = certs_sub.add_parser("inject-ca", help="write a CA into the caBundle of webhook "
                                  "configurations through the API")
    inject.add_argument("--ca-file", required=True, help="PEM CA certificate (e.g. ca.crt)")
    inject.add_argument("--mutating", action="append", default=[], metavar="NAME",
                        help="a MutatingWebhookConfiguration (repeatable)")
    inject.add_argument("--validating", action="append", default=[], metavar="NAME",
                        help="a ValidatingWebhookConfiguration (repeatable)")
    inject.add_argument("--keep-existing", action="store_true",
                        help="add the CA, keeping the unexpired CAs already in the bundle")
    inject.add_argument("--kubeconfig", default=None,
                        help="kubeconfig (default: in-cluster, then $KUBECONFIG)")
    inject.set_defaults(func=cmd_certs_inject_ca)

    policies = sub.add_parser("policies", help="the policies mlgate knows")
    policies_sub = policies.add_subparsers(dest="policies_command", required=True)
    listing = policies_sub.add_parser("list", help="loaded policies, phase, mode and params")
    listing.add_argument("--config", default=None)
    listing.add_argument("--output", "-o", choices=["text", "json"], default="text")
    listing.set_defaults(func=cmd_policies_list)
    reference = policies_sub.add_parser("docs", help="the policy reference in Markdown")
    reference.set_defaults(func=cmd_policies_docs)

    audit = sub.add_parser("audit", help="what the server decided, and the cluster scan")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_report = audit_sub.add_parser("report", help="read /audit/report and print it")
    audit_client.add_arguments(audit_report)
    audit_report.set_defaults(func=audit_client.run)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
