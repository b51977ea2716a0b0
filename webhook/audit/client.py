"""`mlgate audit report`: read `/audit/report` from a running server and print it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_SERVER = "https://127.0.0.1:8443"


def add_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--server", default=os.environ.get("MLGATE_SERVER", DEFAULT_SERVER))
    command.add_argument("--since", default="24h", help="a duration ago (24h, 7d) or a time")
    command.add_argument("--until", default="")
    for name in ("namespace", "policy", "kind", "user", "decision"):
        command.add_argument(f"--{name}", default="")
    command.add_argument("--output", "-o", choices=["table", "json", "html"], default="table")
    command.add_argument("--token", default=os.environ.get("MLGATE_TOKEN"),
                         help="bearer token (default: $MLGATE_TOKEN)")
    command.add_argument("--ca-file", default=None,
                         help="CA that signed the server's certificate (e.g. certs/ca.crt)")
    command.add_argument("--insecure", action="store_true",
                         help="do not verify the server's certificate")


def fetch(args: argparse.Namespace) -> httpx.Response:
    params = {"format": "html" if args.output == "html" else "json", "since": args.since}
    for name in ("until", "namespace", "policy", "kind", "user", "decision"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    verify: bool | str = False if args.insecure else (args.ca_file or True)
    with httpx.Client(base_url=args.server, verify=verify, timeout=30) as client:
        return client.get("/audit/report", params=params, headers=headers)


def _rows(title: str, header: list[str], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return [f"{title}: none", ""]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=False)]
    lines = [title]
    for row in [header, *rows]:
        lines.append("  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths,
                                                                     strict=False)).rstrip())
    return [*lines, ""]


def table(report: dict[str, Any]) -> str:
    t = report["totals"]
    lines = [f"since {report['filters']['since'] or 'the start'}: {t['total']} decisions, "
             f"{t['denied']} denied, {t['mutated']} mutated, {t['warned']} warned, "
             f"{t['allowed']} allowed", ""]
    lines += _rows("POLICIES", ["POLICY", "DENIED", "WARNED", "AUDITED", "MUTATED", "ERRORS"],
                   [[p["policy"], p["denied"], p["warned"], p["audited"], p["mutated"],
                     p["errors"]] for p in report["per_policy"]])
    lines += _rows("NAMESPACES", ["NAMESPACE", "TOTAL", "DENIED", "MUTATED", "WARNED"],
                   [[r["namespace"] or "(cluster)", r["total"], r["denied"], r["mutated"],
                     r["warned"]] for r in report["per_namespace"]])
    lines += _rows("USERS", ["USER", "TOTAL", "DENIED"],
                   [[r["user"], r["total"], r["denied"]] for r in report["per_user"]])
    lines += _rows("LATEST DENIALS", ["KIND", "NAMESPACE/NAME", "USER", "FIRST REASON"],
                   [[r["kind"], f"{r['namespace']}/{r['name']}", r["user"],
                     (r["message"].splitlines() or [""])[0][:100]]
                    for r in report["recent_denials"]])
    lines += _rows("RUNNING WORKLOADS THAT VIOLATE POLICIES",
                   ["KIND", "NAMESPACE/NAME", "POLICIES"],
                   [[v["kind"], f"{v['namespace']}/{v['name']}",
                     ",".join(sorted({f['policy'] for f in v["violations"]}))]
                    for v in report["violations"]])
    excepted = report.get("exceptions") or {}  # absent from servers before exceptions
    applied: dict[str, int] = {}
    for row in excepted.get("applied", []):
        applied[row["exception"]] = applied.get(row["exception"], 0) + row["decisions"]
    lines += _rows("EXCEPTIONS", ["NAME", "OWNER", "EXPIRES", "STATE", "DECISIONS CHANGED"],
                   [[r["name"], r["owner"], r["expires"],
                     f"{r['state']} ({r['days_left']} days left)" if r["state"] == "expiring"
                     else r["state"], applied.get(r["name"], 0)]
                    for r in excepted.get("configured", [])])
    return "\n".join(lines).rstrip() + "\n"


def run(args: argparse.Namespace) -> int:
    try:
        response = fetch(args)
    except httpx.HTTPError as exc:
        print(f"mlgate: cannot reach {args.server}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if response.status_code != 200:
        try:
            reason = response.json().get("error", response.text)
        except ValueError:
            reason = response.text
        print(f"mlgate: {args.server} answered {response.status_code}: {reason}",
              file=sys.stderr)
        return EXIT_FAILED
    if args.output == "html":
        sys.stdout.write(response.text)
    elif args.output == "json":
        print(json.dumps(response.json(), indent=2))
    else:
        sys.stdout.write(table(response.json()))
    return EXIT_OK
