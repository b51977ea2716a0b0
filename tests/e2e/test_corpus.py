"""Every manifest of ../shared/corpus through the real API server (issue 9, point 4).

Each file is created with the CRD of its kinds installed, and the stored object is read
back: the API server must accept mlgate's answers (no webhook protocol error, no refused
patch), every accelerator pod template of the stored object must tolerate its accelerator,
and each field mlgate's patch wrote must still be there after the CRD's structural schema
pruned what it does not know, and a second mutation of the stored object must be empty.
What mlgate should have written comes from `mlgate check` on the same prepared files, so
the offline engine and the server are held to one answer. Every mutating policy is on (as
examples/mlgate.yaml sets them), so every field mlgate can write meets each CRD; besides
the corpus, a GPU object of every kind in the table and the probes in corpus_probes/ do.

Most of the corpus lacks cpu/memory limits, which `require-limits` rightly denies. The
files are therefore created with that policy in `warn` mode (the only way to see the
mutation of a denied manifest stored), and the kubectl warnings must be exactly the
violations `mlgate check` reports in enforce mode; a second pass dry-runs each file in
`enforce` mode and checks the API server refuses exactly the objects `mlgate check`
denies, with mlgate's messages.

The module runs its own control plane: the two MPIJob CRDs share one name (the test swaps
them), and switching a policy to `warn` must not leak into the session cluster.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import factories
from tests.conftest import ABSENT, ROOT, SHARED
from tests.e2e import cluster, controlplane
from tests.fixtures.policies import kinds
from webhook import accelerators, admission, config, engine, kind_table, quantity
from webhook.cli import load_manifests

CORPUS = SHARED / "corpus"
PROBES = Path(__file__).parent / "corpus_probes"
KIND_TABLE = Path("kind-table")  # not a folder: objects built by tests/fixtures
MUTATING = ("gpu-tolerations", "default-resources", "shm-volume", "gpu-node-placement",
            "gpu-env", "default-labels", "priority-class")
CRDS = SHARED / "crds"
# AdmissionReview/AdmissionRequest test fixtures, not manifests: the unit tests feed them
# to the webhook as they are; their objects lack apiVersion/kind and carry server fields.
NOT_MANIFESTS = {"admissionreview"}

# (group, kind[, version]) -> the CRD file that serves it. MPIJob: both CRDs are named
# mpijobs.kubeflow.org, so the version picks one and the test swaps them.
CRD_FILES: dict[tuple[str, ...], str] = {
    ("argoproj.io", "Workflow"): "argo-workflows/argoproj.io_workflows.yaml",
    ("argoproj.io", "WorkflowTemplate"): "argo-workflows/argoproj.io_workflowtemplates.yaml",
    ("argoproj.io", "ClusterWorkflowTemplate"):
        "argo-workflows/argoproj.io_clusterworkflowtemplates.yaml",
    ("argoproj.io", "CronWorkflow"): "argo-workflows/argoproj.io_cronworkflows.yaml",
    ("trainer.kubeflow.org", "TrainingRuntime"):
        "trainer/trainer.kubeflow.org_trainingruntimes.yaml",
    ("kubeflow.org", "MXJob"): "training-operator/kubeflow.org_mxjobs.yaml",
    ("trainer.kubeflow.org", "ClusterTrainingRuntime"):
        "trainer/trainer.kubeflow.org_clustertrainingruntimes.yaml",
    ("trainer.kubeflow.org", "TrainJob"): "trainer/trainer.kubeflow.org_trainjobs.yaml",
    ("serving.kserve.io", "InferenceService"): "kserve/serving.kserve.io_inferenceservices.yaml",
    ("kubeflow.org", "JAXJob"): "training-operator/kubeflow.org_jaxjobs.yaml",
    ("kubeflow.org", "PaddleJob"): "training-operator/kubeflow.org_paddlejobs.yaml",
    ("kubeflow.org", "PyTorchJob"): "training-operator/kubeflow.org_pytorchjobs.yaml",
    ("kubeflow.org", "TFJob"): "training-operator/kubeflow.org_tfjobs.yaml",
    ("kubeflow.org", "XGBoostJob"): "training-operator/kubeflow.org_xgboostjobs.yaml",
    ("kubeflow.org", "MPIJob", "v1"): "training-operator/kubeflow.org_mpijobs.yaml",
    ("kubeflow.org", "MPIJob", "v2beta1"): "mpi-operator/kubeflow.org_mpijobs.yaml",
    ("jobset.x-k8s.io", "JobSet"): "jobset/jobset.x-k8s.io_jobsets.yaml",
    ("kueue.x-k8s.io", "ResourceFlavor"): "kueue/kueue.x-k8s.io_resourceflavors.yaml",
    ("kueue.x-k8s.io", "ClusterQueue"): "kueue/kueue.x-k8s.io_clusterqueues.yaml",
    ("kueue.x-k8s.io", "LocalQueue"): "kueue/kueue.x-k8s.io_localqueues.yaml",
    ("leaderworkerset.x-k8s.io", "LeaderWorkerSet"):
        "lws/leaderworkerset.x-k8s.io_leaderworkersets.yaml",
    ("ray.io", "RayCluster"): "kuberay/ray.io_rayclusters.yaml",
    ("ray.io", "RayJob"): "kuberay/ray.io_rayjobs.yaml",
    ("ray.io", "RayService"): "kuberay/ray.io_rayservices.yaml",
    ("batch.volcano.sh", "Job"): "volcano/batch.volcano.sh_jobs.yaml",
}
BUILT_IN_GROUPS = {"", "apps", "batch", "resource.k8s.io"}
CLUSTER_SCOPED = {"ClusterTrainingRuntime", "ClusterWorkflowTemplate", "ResourceFlavor",
                  "ClusterQueue", "DeviceClass"}
# Groups the corpus uses that have no CRD in ../shared/crds.
NO_CRD = {"scheduling.run.ai": "KAI scheduler Queue: no CRD in ../shared/crds",
          "serving.kubeflow.org": "KFServing's InferenceService: no CRD in ../shared/crds"}
# apiVersions rewritten before creating (the reason is part of the test's record).
REWRITES = {
    "serving.kubeflow.org/v1beta1": (
        "serving.kserve.io/v1beta1",
        "KFServing's group before its rename to KServe (same v1beta1 API); only the "
        "serving.kserve.io CRD is in ../shared/crds"),
    "jobset.x-k8s.io/v1": (
        "jobset.x-k8s.io/v1alpha2",
        "the JobSet CRD serves only v1alpha2; the example was written for a later v1"),
    "kueue.x-k8s.io/v1beta1": (
        "kueue.x-k8s.io/v1beta2",
        "the Kueue CRDs here have no conversion webhook: objects are written in v1beta2"),
}


def corpus_files() -> list[Any]:
    """The corpus, the few probes of this folder (cases the corpus lacks), and one GPU
    object of every workload kind in mlgate's table (so kinds and pod paths the corpus never uses,
    e.g. CronWorkflow or MXJob, meet their CRD too)."""
    if not CORPUS.is_dir():
        return [pytest.param(None, id="corpus-absent", marks=pytest.mark.skip(reason=ABSENT))]
    files = [path for root in (CORPUS, PROBES) for path in sorted(root.rglob("*"))
             if path.suffix in (".yaml", ".yml", ".json")
             and relative(path).split("/")[0] not in NOT_MANIFESTS]
    files += [KIND_TABLE / f"{spec.group or 'core'}/{spec.kind}.yaml"
              for spec in kind_table.WORKLOAD_KINDS if spec.group not in NO_CRD]
    return [pytest.param(path, id=relative(path)) for path in files]


def relative(path: Path) -> str:
    """`deployment/x.yaml` for the corpus, `corpus_probes/x.yaml` for the probes,
    `kind-table/apps/Deployment.yaml` for objects built from the kind table."""
    if not path.is_absolute():
        return str(path)
    return str(path.relative_to(CORPUS if path.is_relative_to(CORPUS) else PROBES.parent))


def kind_table_object(path: Path) -> dict[str, Any]:
    """A GPU object of one kind of the table, as the policy unit tests build it."""
    group, kind = path.parts[1], path.stem
    spec = kind_table.lookup("" if group == "core" else group, kind)
    assert spec is not None, path
    pod = factories.pod_spec(
        factories.container("trainer", limits={**factories.GPU, **factories.LIMITED}),
        initContainers=[factories.container("fetch", limits=factories.LIMITED)])
    obj = kinds.wrap(spec, pod, name=f"gpu-{kind.lower()}", labels={"team": "ml"},
                     template_labels={"app": "gpu"})
    # What the unit fixture leaves out and the real API server requires:
    body = obj["spec"]
    if spec.group == "apps":
        body["selector"] = {"matchLabels": {"app": "gpu"}}
    if spec.group == "batch":
        job = body["jobTemplate"]["spec"] if kind == "CronJob" else body
        job["template"]["spec"]["restartPolicy"] = "Never"
    if kind == "MXJob":
        body["jobMode"] = "MXTrain"
    if kind == "CronWorkflow":  # Argo 3.6 replaced `schedule` by `schedules`
        body["schedules"] = [body.pop("schedule")]
    return obj


@dataclass
class Manifest:
    """One corpus file as it is created: objects in the kind group's namespace."""

    path: Path
    namespace: str
    prepared: Path
    objects: list[dict[str, Any]]
    left_out: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)  # `mlgate check`, per object

    @property
    def name(self) -> str:
        return relative(self.path)


def prepare(path: Path, workdir: Path) -> Manifest:
    """The objects of one file, ready for one namespace per kind group (the file's folder).

    Namespaces of the manifest are left out (its objects go to the group's namespace,
    which has the `default` ServiceAccount that Pods need); kinds whose CRD is not here are
    left out; old API groups are rewritten to the ones the CRDs here serve."""
    group_dir = relative(path).split("/")[0].replace("_", "-")
    manifest = Manifest(path=path, namespace=f"corpus-{group_dir}",
                        prepared=(workdir / relative(path)).with_suffix(".yaml"), objects=[])
    source = path
    if not path.is_absolute():  # built from the kind table
        source = workdir.parent / "sources" / path
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(yaml.safe_dump(kind_table_object(path)))
    for obj in load_manifests(source):
        kind, api_version = str(obj.get("kind")), str(obj.get("apiVersion"))
        meta = obj.setdefault("metadata", {})
        label = f"{kind} {meta.get('name') or meta.get('generateName')}"
        if kind == "Namespace":
            manifest.left_out.append(f"{label}: its objects go to {manifest.namespace}")
            continue
        if api_version in REWRITES:
            obj["apiVersion"], reason = REWRITES[api_version]
            manifest.rewritten.append(f"{label}: {api_version} -> {obj['apiVersion']} ({reason})")
        if (group := kind_table.group_of(obj["apiVersion"])) in NO_CRD:
            manifest.left_out.append(f"{label}: {NO_CRD[group]}")
            continue
        if kind == "LeaderWorkerSet" and isinstance(network := obj["spec"].get("networkConfig"),
                                                     dict) and "subdomainPolicy" not in network:
            network["subdomainPolicy"] = "Shared"
            manifest.rewritten.append(f"{label}: spec.networkConfig.subdomainPolicy: Shared "
                                      f"(the default LWS's own webhook sets; the CRD requires it)")
        if kind in CLUSTER_SCOPED:
            meta.pop("namespace", None)
        else:
            meta["namespace"] = manifest.namespace
        manifest.objects.append(obj)
    manifest.prepared.parent.mkdir(parents=True, exist_ok=True)
    manifest.prepared.write_text(yaml.safe_dump_all(manifest.objects, sort_keys=False))
    return manifest


def crd_file(obj: dict[str, Any]) -> str | None:
    api_version = str(obj["apiVersion"])
    group, version = kind_table.group_of(api_version), api_version.rpartition("/")[2]
    if group in BUILT_IN_GROUPS:
        return None
    key = (group, str(obj["kind"]))
    found = CRD_FILES.get((*key, version)) or CRD_FILES.get(key)
    assert found, f"no CRD file known for {api_version} {obj['kind']}: add it to CRD_FILES"
    return found


# -- comparing the stored object with what mlgate said it wrote ------------------------
MISSING = object()


def at(obj: Any, path: str) -> Any:
    for token in path.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(obj, list) and token.isdigit() and int(token) < len(obj):
            obj = obj[int(token)]
        elif isinstance(obj, dict) and token in obj:
            obj = obj[token]
        else:
            return MISSING
    return obj


def contains(stored: Any, expected: Any) -> bool:
    """`expected` is in `stored`: maps may have more keys (defaults), lists more items
    (e.g. the tolerations DefaultTolerationSeconds adds), quantities may be normalised."""
    if isinstance(expected, dict):
        return isinstance(stored, dict) and all(
            key in stored and contains(stored[key], value) for key, value in expected.items())
    if isinstance(expected, list):
        return isinstance(stored, list) and all(
            any(contains(item, wanted) for item in stored) for wanted in expected)
    if isinstance(expected, str | int | float) and not isinstance(expected, bool):
        same = quantity.parse(str(expected))
        return str(stored) == str(expected) or (
            same is not None and quantity.parse(str(stored)) == same)
    return bool(stored == expected)


def pruned(stored: dict[str, Any], patch: list[dict[str, Any]]) -> list[str]:
    """Each add/replace of mlgate's patch that is not in the stored object."""
    lost = []
    for op in patch:
        if op["op"] not in ("add", "replace"):
            continue
        path, value = op["path"], op["value"]
        parent, _, last = path.rpartition("/")
        if last.isdigit() or last == "-":  # a list item: anywhere in the stored list
            path, value = parent, [value]
        if not contains(at(stored, path), value):
            lost.append(f"{op['op']} {op['path']} {json.dumps(op['value'])}: stored "
                        f"{json.dumps(at(stored, path), default=lambda _: '(missing)')}")
    return lost


def untolerated(obj: dict[str, Any]) -> list[str]:
    """Accelerators of the object's pod specs whose taint the pod spec does not tolerate."""
    view = kind_table.view(obj)
    return [f"{pod.pointer}: {resource}" for pod in view.pods
            for resource in accelerators.pod_accelerators(pod, accelerators.DEFAULT_ACCELERATORS)
            if not pod.tolerates(resource)]


# -- the module's control plane --------------------------------------------------------
@dataclass
class Corpus:
    plane: controlplane.ControlPlane
    gate: cluster.Mlgate
    manifests: dict[Path, Manifest]
    chart_config: dict[str, Any]
    engine: engine.Engine
    crds: dict[str, str] = field(default_factory=dict)  # CRD name -> file installed
    namespaces: set[str] = field(default_factory=set)
    mode: str = "enforce"

    def require_limits(self, mode: str) -> None:
        if mode != self.mode:
            config = json.loads(json.dumps(self.chart_config))
            config["policies"]["require-limits"]["mode"] = mode
            self.gate.configure(config)
            self.mode = mode

    def ready(self, manifest: Manifest) -> None:
        """The group's namespace, and the CRDs of the file's kinds (swapping a CRD whose
        name another file's CRD shares)."""
        if manifest.namespace not in self.namespaces:
            self.plane.namespace(manifest.namespace)
            self.namespaces.add(manifest.namespace)
        for relative in dict.fromkeys(filter(None, map(crd_file, manifest.objects))):
            name = cluster.crd_name(CRDS / relative)
            if self.crds.get(name) == relative:
                continue
            if name in self.crds:
                self.plane.kubectl("delete", "crd", name, "--wait=true", timeout=120)
            cluster.install_crds(self.plane, [CRDS / relative])
            self.crds[name] = relative

    def create(self, manifest: Manifest, *args: str) -> tuple[int, str, list[dict[str, Any]]]:
        result = self.plane.kubectl("create", "-n", manifest.namespace, "-f",
                                    str(manifest.prepared), "-o", "json", "--validate=warn",
                                    *args, check=False)
        return result.returncode, result.stderr, list(json_objects(result.stdout))

    def delete(self, objects: list[dict[str, Any]]) -> None:
        for obj in objects:
            meta = obj["metadata"]
            args = ["-n", meta["namespace"]] if meta.get("namespace") else []
            self.plane.kubectl("delete", resource(obj), *args, "--wait=false",
                               "--ignore-not-found", check=False)

    def reviewed(self, namespace: str) -> set[tuple[str, str, str]]:
        """(kind, name, phase) of every CREATE mlgate journaled in `namespace` (or at
        cluster scope)."""
        return {(d["kind"], d["name"], d["phase"]) for d in self.decisions()
                if d["namespace"] in (namespace, "") and d["operation"] == "CREATE"}

    def decisions(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        cursor = ""
        with self.gate.client() as client:
            while True:
                response = client.get("/audit/decisions", params={"cursor": cursor, "limit": 500}
                                      if cursor else {"limit": 500},
                                      headers={"Authorization": "Bearer corpus-reader"})
                response.raise_for_status()
                page = response.json()
                records += page["items"]
                if not (cursor := page.get("next") or ""):
                    return records


def json_objects(text: str) -> Iterator[dict[str, Any]]:
    """kubectl prints one JSON document per created object (or a List)."""
    decoder, index = json.JSONDecoder(), 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        doc, index = decoder.raw_decode(text, index)
        yield from doc["items"] if doc.get("kind") == "List" else [doc]


def resource(obj: dict[str, Any]) -> str:
    """`Kind.version.group/name`: unambiguous for kubectl (two `Job` kinds in the corpus)."""
    group = kind_table.group_of(obj["apiVersion"])
    version = obj["apiVersion"].rpartition("/")[2]
    return f"{obj['kind']}.{version}.{group}/{obj['metadata']['name']}".replace("..", ".")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    if not CORPUS.is_dir() or not CRDS.is_dir():
        pytest.skip(ABSENT)
    workdir = tmp_path_factory.mktemp("corpus")
    manifests = {path: prepare(path, workdir / "prepared")
                 for path in (p.values[0] for p in corpus_files())}
    # The DRA example's ResourceClaimTemplate is resource.k8s.io/v1beta1, off by default.
    with controlplane.running(workdir / "plane",
                              ("--runtime-config=resource.k8s.io/v1beta1=true",)) as plane:
        gate = cluster.install(plane, workdir / "mlgate", "--set", "config.dra.cache.enabled=true")
        cluster.token_kubeconfig(plane, workdir / "sa-kubeconfig",
                                 cluster.token(plane, gate.release, gate.namespace))
        chart_config = yaml.safe_load(gate.config_file.read_text()) or {}
        chart_config["dra"]["cache"]["kubeconfig"] = str(workdir / "sa-kubeconfig")
        chart_config["policies"].update(library_mutations())
        plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(
            {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
             "metadata": {"name": name}, "value": 1000}
            for name in library_mutations()["priority-class"]["params"]["classes"].values()))
        (workdir / "tokens.csv").write_text('corpus-reader,corpus,1,"mlgate:audit-readers"\n')
        chart_config["audit"] = {"tokenFile": str(workdir / "tokens.csv")}
        gate.config_file.write_text(yaml.safe_dump(chart_config))
        checked = expected_by_check(gate.config_file, workdir / "prepared", plane)
        for manifest in manifests.values():
            manifest.checks = checked.get(str(manifest.prepared), [])
            assert len(manifest.checks) == len(manifest.objects), manifest.name
        gate.start()
        try:
            yield Corpus(plane=plane, gate=gate, manifests=manifests, chart_config=chart_config,
                         engine=engine.Engine.build(config.load(gate.config_file)))
        finally:
            gate.stop()


def library_mutations() -> dict[str, Any]:
    """Every mutating policy as examples/mlgate.yaml configures it for a GPU cluster: the
    fields the CRDs must keep are those all of them write (volumes, mounts, env, node
    selectors and affinity, labels, priority classes), not only tolerations and requests."""
    example = yaml.safe_load((ROOT / "examples" / "mlgate.yaml").read_text())["policies"]
    return {name: example[name] for name in MUTATING}


def expected_by_check(config: Path, prepared: Path, plane: controlplane.ControlPlane,
                      ) -> dict[str, list[dict[str, Any]]]:
    """`mlgate check -o json` over every prepared file, with the server's configuration."""
    result = subprocess.run([sys.executable, "-m", "webhook.cli", "check", "-o", "json",
                             "--config", str(config), "-f", str(prepared)],
                            capture_output=True, text=True, env=plane.env, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    by_file: dict[str, list[dict[str, Any]]] = {}
    for entry in json.loads(result.stdout):
        by_file.setdefault(entry["file"], []).append(entry)
    return by_file


def generated(message: str, obj: dict[str, Any]) -> str:
    """`mlgate check` names a generateName object by its prefix; the API server has
    generated the name before validating admission."""
    meta = obj["metadata"]
    if not meta.get("generateName"):
        return message
    where = f"/{meta['generateName']} " if meta.get("namespace") else f" {meta['generateName']} "
    return message.replace(where, where.replace(meta["generateName"], meta["name"]), 1)


def workload_kind(obj: dict[str, Any]) -> bool:
    return kind_table.lookup(kind_table.group_of(obj["apiVersion"]), obj["kind"]) is not None


def phases(obj: dict[str, Any]) -> tuple[str, ...]:
    """The webhooks an object of the table goes through: the mutating one only for kinds
    with pod specs (DRA claims are validated, never mutated)."""
    spec = kind_table.lookup(kind_table.group_of(obj["apiVersion"]), obj["kind"])
    return ("mutate", "validate") if spec is not None and spec.pod_specs else ("validate",)


# -- the tests -------------------------------------------------------------------------
@pytest.mark.parametrize("path", corpus_files())
def test_stored_object_keeps_mlgate_s_mutations_and_tolerates_its_accelerators(
        corpus: Corpus, path: Path) -> None:
    manifest = corpus.manifests[path]
    corpus.require_limits("warn")
    corpus.ready(manifest)
    code, stderr, created = corpus.create(manifest)
    try:
        assert code == 0, f"{manifest.name}: kubectl create failed:\n{stderr}"
        assert "webhook" not in stderr.replace("Warning: [", ""), stderr
        assert len(created) == len(manifest.objects), stderr
        warnings = {line.removeprefix("Warning: ") for line in stderr.splitlines()
                    if line.startswith("Warning: [")}
        # The manifest's own fields this CRD does not know (pruned; not mlgate's doing).
        print(f"{manifest.name}: other warnings: " + "; ".join(
            line for line in stderr.splitlines() if line.startswith("Warning: ")
            and not line.startswith("Warning: [")))
        violations = {generated(v, obj) for obj, check in zip(created, manifest.checks,
                                                              strict=True)
                      for v in admission.cap_warnings(check["violations"])}
        assert warnings == violations, (
            f"{manifest.name}: kubectl warnings differ from `mlgate check`'s violations\n"
            f"only from the server: {sorted(warnings - violations)}\n"
            f"only from check: {sorted(violations - warnings)}")
        problems = []
        for obj, check in zip(created, manifest.checks, strict=True):
            args = ["-n", manifest.namespace] if obj["metadata"].get("namespace") else []
            stored = json.loads(corpus.plane.kubectl("get", resource(obj), *args,
                                                     "-o", "json").stdout)
            where = f"{stored['kind']} {stored['metadata']['name']}"
            problems += [f"{where}: pruned or changed: {lost}"
                         for lost in pruned(stored, check["patch"])]
            problems += [f"{where}: not tolerated: {miss}" for miss in untolerated(stored)]
            expected = kind_table.view(json.loads(json.dumps(obj)))
            if len(kind_table.view(stored).pods) != len(expected.pods):
                problems.append(f"{where}: pod specs lost in storage")
            # What the API server stored (defaulted, normalised, pruned) needs nothing more
            # from mlgate: a reinvocation would be a no-op, not a patch loop.
            mutated, _, _ = asyncio.run(corpus.engine.check(stored, manifest.namespace))
            if mutated.patch and workload_kind(stored):
                problems.append(f"{where}: mlgate would patch the stored object again: "
                                f"{mutated.patch}")
        assert not problems, f"{manifest.name}:\n" + "\n".join(problems)
        # With generateName, the API server names the object after mutating admission.
        wanted = {(obj["kind"], obj["metadata"]["name"] if phase == "validate" else
                   obj["metadata"].get("generateName") or obj["metadata"]["name"], phase)
                  for obj in created if workload_kind(obj) for phase in phases(obj)}
        deadline = time.monotonic() + 10  # the journal is written every 200 ms
        while missing := wanted - corpus.reviewed(manifest.namespace):
            assert time.monotonic() < deadline, f"{manifest.name}: never reviewed: {missing}"
            time.sleep(0.2)
    finally:
        corpus.delete(created)


@pytest.mark.parametrize("path", [p for p in corpus_files()
                                  if p.values[0] is None or p.values[0].is_absolute()])
def test_enforced_verdict_is_the_one_mlgate_check_gives(corpus: Corpus, path: Path) -> None:
    manifest = corpus.manifests[path]
    corpus.require_limits("enforce")
    corpus.ready(manifest)
    code, stderr, created = corpus.create(manifest, "--dry-run=server")
    denied = [check for check in manifest.checks if check["verdict"] == "denied"]
    assert code == (1 if denied else 0), f"{manifest.name}:\n{stderr}"
    assert len(created) == len(manifest.objects) - len(denied), stderr
    assert stderr.count('admission webhook "validate.mlgate.io" denied the request') == \
        len(denied), stderr
    for obj in manifest.objects:  # nothing stored: a generated name is a prefix + 5 chars
        if prefix := obj["metadata"].get("generateName"):
            stderr = re.sub(re.escape(prefix) + r"[a-z0-9]{5}\b", prefix, stderr)
    for check in denied:
        assert all(v.startswith("[require-limits] ") for v in check["violations"]), check
        for violation in check["violations"]:
            assert violation in stderr, f"{manifest.name}: {violation!r} not in\n{stderr}"
