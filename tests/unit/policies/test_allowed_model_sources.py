"""allowed-model-sources: every storage URI of an InferenceService (both API groups, every
component and canary) comes from a scheme or prefix the namespace allows."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.allowed_model_sources import AllowedModelSources
from tests.fixtures.policies import kinds
from webhook import errors, kind_table, models

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "workloads"
PARAMS = {"namespaces": {
    "prod-*": {"prefixes": ["oci://registry.example.com/models/", "s3://ml-models/"]},
    "*": {"schemes": ["oci", "s3", "gs", "pvc"]}}}


def isvc(group: str = "serving.kserve.io") -> dict[str, Any]:
    return {"apiVersion": f"{group}/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "m"},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "huggingface"},
                                             "storageUri": "hf://meta-llama/Llama-3-8B"},
                                   "storageUris": [{"uri": "s3://ml-models/tokenizer",
                                                    "mountPath": "/mnt/tok"}]},
                     "explainer": {"art": {"storageUri": "https://example.com/art.bin"}},
                     "canary": [{"predictor": {"sklearn": {
                         "storageUri": "oci://registry.example.com/models/iris:1"}}}]}}


def test_every_model_uri_is_found() -> None:
    view = kind_table.view(isvc())
    assert [(s.pointer, s.role, s.scheme) for s in models.sources(view)] == [
        ("/spec/predictor/model/storageUri", "predictor", "hf"),
        ("/spec/predictor/storageUris/0/uri", "predictor", "s3"),
        ("/spec/explainer/art/storageUri", "explainer", "https"),
        ("/spec/canary/0/predictor/sklearn/storageUri", "canary/0/predictor", "oci")]
    assert models.sources(kind_table.view(yaml.safe_load(
        (FIXTURES / "pod.yaml").read_text()))) == []


@pytest.mark.parametrize("group", models.KSERVE_GROUPS)
def test_prod_allows_only_its_prefixes(group: str) -> None:
    found = kinds.violations(AllowedModelSources, PARAMS, isvc(group), namespace="prod-eu")
    assert [v.path for v in found] == ["/spec/predictor/model/storageUri",
                                       "/spec/explainer/art/storageUri"]
    assert found[0].what == (
        "the model 'hf://meta-llama/Llama-3-8B' at /spec/predictor/model/storageUri is not "
        "from a source allowed in namespace 'prod-eu' (allowed: "
        "oci://registry.example.com/models/, s3://ml-models/)")
    assert "point the storage URI at it" in found[0].fix


def test_other_namespaces_follow_the_catch_all_and_unmatched_are_free() -> None:
    found = kinds.violations(AllowedModelSources, PARAMS, isvc(), namespace="dev")
    assert [v.path for v in found] == ["/spec/predictor/model/storageUri",
                                       "/spec/explainer/art/storageUri"]
    only_prod = {"namespaces": {"prod-*": PARAMS["namespaces"]["prod-*"]}}
    assert kinds.violations(AllowedModelSources, only_prod, isvc(), namespace="dev") == []
    clean = copy.deepcopy(isvc())
    clean["spec"]["predictor"]["model"]["storageUri"] = "oci://registry.example.com/models/l:1"
    del clean["spec"]["explainer"]
    assert kinds.violations(AllowedModelSources, PARAMS, clean, namespace="prod-eu") == []


@pytest.mark.parametrize(("params", "message"), [
    ({"namespaces": {"*": {"schemes": ["s3://"]}}}, "must be a bare scheme"),
    ({"namespaces": {"*": {"prefixes": ["registry.example.com/models/"]}}},
     "must be a URI prefix"),
])
def test_bad_params_name_what_is_wrong(params: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, errors.ConfigError), match=message):
        kinds.violations(AllowedModelSources, params, isvc())


def test_through_the_engine_denies_with_the_field() -> None:
    _, decision, _ = kinds.check({"allowed-model-sources": {"params": PARAMS}}, isvc(),
                                 namespace="prod-eu")
    assert not decision.allowed
    assert "[allowed-model-sources]" in decision.message
    assert "hf://meta-llama/Llama-3-8B" in decision.message


def test_the_documented_examples_load() -> None:
    """The YAML examples in policies/README.md (from the docstrings of this policy and of
    image-signatures) validate and compile, CEL conditions included."""
    import re

    from policies import image_signatures

    readme = (Path(__file__).resolve().parents[3] / "policies" / "README.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)]
    sources = [b for b in blocks if "allowed-model-sources" in b]
    rules = [b for b in blocks if "rules" in b and "attestations" in str(b)]
    assert sources and rules
    for block in sources:
        params = block["allowed-model-sources"]["params"]
        AllowedModelSources(AllowedModelSources.params_model.model_validate(params))
    for block in rules:
        signatures = image_signatures.ImageSignatures(
            image_signatures.Params.model_validate(block))
        asyncio.run(signatures.aclose())
