"""`mlgate check` and `mlgate policies list`: what a platform engineer runs offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.factories import GPU, container, pod, pod_spec
from webhook import cli

GOOD = pod(pod_spec(container(limits={"cpu": "1", "memory": "1Gi", **GPU})), name="good")
BAD = pod(pod_spec(container("nolimits")), name="bad")
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}


def write(path: Path, *docs: object) -> Path:
    path.write_text(yaml.safe_dump_all(docs))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_all_allowed_exits_0_and_shows_the_patch(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "-f", str(write(tmp_path / "a.yaml", GOOD)))
    assert code == 0
    assert "Pod good: ALLOWED" in out
    assert "add /spec/tolerations" in out and "gpu-tolerations" in out


def test_any_denial_exits_1_and_names_the_violation(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "multi.yaml", GOOD, None, BAD, CONFIGMAP)
    code, out, _ = run(capsys, "check", "-f", str(path))
    assert code == 1
    assert 'deny: [require-limits] Pod ml/bad /spec container "nolimits": no cpu limit' in out
    assert "3 resources: 1 denied, 1 allowed, 1 skipped" in out


def test_directories_json_and_lists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "list.json").write_text(json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [GOOD, BAD]}))
    write(tmp_path / "one.yml", GOOD)
    (tmp_path / "notes.txt").write_text("not a manifest")
    code, out, _ = run(capsys, "check", "-f", str(tmp_path), "--output", "json")
    results = json.loads(out)
    assert code == 1
    assert [(r["resource"], r["verdict"]) for r in results] == [
        ("Pod good", "allowed"), ("Pod good", "allowed"), ("Pod bad", "denied")]


def test_mutation_happens_before_validation(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "mlgate.yaml"
    cfg.write_text("policies:\n  default-resources:\n    params:\n      default:\n"
                   "        limits: {cpu: '2', memory: 4Gi}\n")
    code, out, _ = run(capsys, "check", "-f", str(write(tmp_path / "bad.yaml", BAD)),
                       "--config", str(cfg))
    assert code == 0, out  # default limits were filled in before require-limits ran


@pytest.mark.parametrize(("content", "message"), [
    ("kind: [unclosed", "not valid YAML or JSON"),
    ("- a\n- b\n", "document 1 is not a mapping"),
])
def test_bad_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str,
                          message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    code, _, err = run(capsys, "check", "-f", str(path))
    assert code == 2 and message in err and str(path) in err


def test_missing_file_and_bad_config_exit_2(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", "-f", str(tmp_path / "absent.yaml"))
    assert code == 2 and "no such file" in err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("policies: {require-limits: {mode: nope}}")
    code, _, err = run(capsys, "check", "-f", str(write(tmp_path / "a.yaml", GOOD)),
                       "--config", str(cfg))
    assert code == 2 and "policies.require-limits.mode" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["check"])
    assert caught.value.code == 2


def test_policies_list_shows_phase_mode_and_params(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("policies: {require-limits: {mode: warn, params: {resources: [memory]}}}")
    code, out, _ = run(capsys, "policies", "list", "--config", str(cfg), "--output", "json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0
    assert rows["require-limits"]["mode"] == "warn"
    assert rows["require-limits"]["params"]["resources"] == ["memory"]
    assert rows["gpu-tolerations"]["phase"] == "mutate"


def test_json_with_tabs_and_admission_reviews(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from tests import factories

    (tmp_path / "review.json").write_text(json.dumps(factories.admission_review(BAD), indent="\t"))
    request = factories.admission_review(GOOD)["request"]
    (tmp_path / "request.json").write_text(json.dumps(request, indent="\t"))
    code, out, _ = run(capsys, "check", "-f", str(tmp_path), "--output", "json")
    results = json.loads(out)
    assert code == 1
    assert [(r["resource"], r["verdict"]) for r in results] == [
        ("Pod good", "allowed"), ("Pod bad", "denied")]


def test_check_shows_the_exception_that_let_a_resource_through(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "mlgate.yaml"
    cfg.write_text(yaml.safe_dump({"exceptions": {"legacy-bad": {
        "policies": ["require-limits"], "match": {"names": ["bad"]}, "owner": "team-a",
        "reason": "limits come with the v2 image", "expires": "2999-01-01"}}}))
    path = write(tmp_path / "bad.yaml", BAD)
    code, out, _ = run(capsys, "check", "--config", str(cfg), "-f", str(path))
    assert code == 0, out
    assert "Pod bad: ALLOWED" in out
    assert ("warn: [require-limits] allowed by exception legacy-bad (owner team-a, expires "
            "2999-01-01): Pod ml/bad /spec container \"nolimits\": no cpu limit "
            "(set resources.limits.cpu, e.g. cpu: 500m)") in out
    assert ("  exception legacy-bad (owner team-a, expires 2999-01-01): "
            "limits come with the v2 image") in out
    code, out, _ = run(capsys, "check", "--config", str(cfg), "-f", str(path),
                       "--output", "json")
    assert json.loads(out)[0]["exceptions"] == [{
        "name": "legacy-bad", "owner": "team-a", "expires": "2999-01-01",
        "reason": "limits come with the v2 image"}]


# -- DRA: pods find their claim templates among the manifests given ----------------------
DRA_DEMO = "corpus/pod/dra-gpu-test-count-resourceclaim-multidoc.yaml"


def test_check_resolves_claim_templates_of_a_multi_document_file(
        shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo = shared_dir / DRA_DEMO
    docs = list(yaml.safe_load_all(demo.read_text()))
    assert [d["kind"] for d in docs if d] == ["Namespace", "ResourceClaimTemplate", "Pod"]
    cfg = tmp_path / "mlgate.yaml"
    cfg.write_text(yaml.safe_dump({"policies": {"gpu-limits": {"params": {"maxPerPod": 1}}}}))
    code, out, _ = run(capsys, "check", "-f", str(demo), "--config", str(cfg))
    assert code == 1
    assert ("deny: [gpu-limits] Pod gpu-test1/gpu-pod /spec: the pod (pod) asks for 2 "
            "accelerators (through pod claim 'twogpus' (claim template double-gpu), request "
            "'gpu': 2 x gpu.nvidia.com); at most 1 are allowed per pod in namespace "
            "gpu-test1") in out
    assert "[dra]" not in out

    # the demo adds the GPU toleration by hand; without it, gpu-tolerations adds it
    pod = docs[-1]
    del pod["spec"]["tolerations"]
    code, out, _ = run(capsys, "check", "-f", str(write(tmp_path / "pod.yaml", pod)),
                       "-f", str(write(tmp_path / "template.yaml", docs[1])), "-o", "json")
    result = {r["resource"]: r for r in json.loads(out)}["Pod gpu-pod"]
    assert {"op": "add", "path": "/spec/tolerations", "value": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]} in result[
        "patch"]
    assert result["warnings"] == []


def test_check_says_when_a_claim_template_is_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = pod_spec(container(limits={"cpu": "1", "memory": "1Gi"}),
                    resourceClaims=[{"name": "g", "resourceClaimTemplateName": "absent"}])
    spec["containers"][0]["resources"]["claims"] = [{"name": "g"}]
    code, out, _ = run(capsys, "check", "-f", str(write(tmp_path / "p.yaml", pod(spec))))
    assert code == 0
    assert ("warn: [dra] Pod ml/train /spec: pod claim 'g' (claim template absent) is not in "
            "the manifests given, so its devices cannot be counted") in out
