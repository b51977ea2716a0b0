"""The AdmissionReview wire format, as kube-apiserver speaks it."""

from __future__ import annotations

import base64
import json

import pytest

from tests import factories
from webhook import admission


def body(review: object) -> bytes:
    return json.dumps(review).encode()


class TestParse:
    def test_create_with_generate_name_has_empty_name(self) -> None:
        obj = factories.pod()
        del obj["metadata"]["name"]
        obj["metadata"]["generateName"] = "train-"
        request = admission.parse(body(factories.admission_review(obj)))
        assert request.name == ""
        assert request.operation == "CREATE"
        assert request.kind == "Pod" and request.group == ""
        assert request.dry_run is False

    def test_delete_has_null_object_and_old_object(self) -> None:
        review = factories.admission_review(None, old=factories.pod(), operation="DELETE")
        assert review["request"]["object"] is None
        request = admission.parse(body(review))
        assert request.object is None and request.old_object is not None

    def test_connect_has_no_old_object_and_no_options(self) -> None:
        review = factories.admission_review(factories.pod(), operation="CONNECT")
        assert "oldObject" not in review["request"] and "options" not in review["request"]
        request = admission.parse(body(review))
        assert request.operation == "CONNECT" and request.old_object is None

    def test_v1beta1_is_normalised_and_remembered(self) -> None:
        review = factories.admission_review(factories.pod(),
                                            api_version="admission.k8s.io/v1beta1")
        request = admission.parse(body(review))
        assert request.api_version == "admission.k8s.io/v1beta1"

    def test_user_and_groups(self) -> None:
        review = factories.admission_review(factories.pod(), user="bob", groups=["ml", "dev"])
        request = admission.parse(body(review))
        assert request.user == "bob" and request.groups == ("ml", "dev")

    @pytest.mark.parametrize(
        ("mutate", "status", "reason"),
        [
            (lambda r: b"{not json", 400, "not valid JSON"),
            (lambda r: b"[]", 400, "JSON object"),
            (lambda r: body({**r, "apiVersion": "admission.k8s.io/v2"}), 400, "apiVersion"),
            (lambda r: body({**r, "kind": "Pod"}), 400, "kind must be AdmissionReview"),
            (lambda r: body({k: v for k, v in r.items() if k != "request"}), 400, "request"),
            (lambda r: body({**r, "request": {**r["request"], "uid": None}}), 400, "request.uid"),
            (lambda r: body({**r, "request": {**r["request"], "uid": ""}}), 400, "request.uid"),
            (lambda r: body({**r, "request": {**r["request"], "operation": "PATCH"}}), 400,
             "request.operation"),
            (lambda r: body({**r, "request": {**r["request"], "object": None}}), 400,
             "request.object is required"),
            (lambda r: body({**r, "request": {**r["request"], "object": "x"}}), 400,
             "request.object must be an object"),
            (lambda r: body({**r, "request": {**r["request"], "dryRun": "yes"}}), 400,
             "request.dryRun"),
            (lambda r: body({**r, "request": {**r["request"], "kind": "Pod"}}), 400,
             "request.kind"),
        ],
    )
    def test_bad_envelopes_name_the_problem(self, mutate, status, reason) -> None:
        review = factories.admission_review(factories.pod())
        with pytest.raises(admission.BadReview) as caught:
            admission.parse(mutate(review))
        assert caught.value.status == status
        assert reason in caught.value.reason
        assert "\n" not in caught.value.reason

    def test_update_needs_old_object(self) -> None:
        review = factories.admission_review(factories.pod(), operation="UPDATE")
        with pytest.raises(admission.BadReview, match="oldObject is required"):
            admission.parse(body(review))

    def test_body_over_limit_is_413(self) -> None:
        with pytest.raises(admission.BadReview) as caught:
            admission.parse(b" " * 101, max_bytes=100)
        assert caught.value.status == 413

    @pytest.mark.parametrize("content_type", ["text/plain", "application/yaml", ""])
    def test_wrong_content_type_is_415(self, content_type: str) -> None:
        with pytest.raises(admission.BadReview) as caught:
            admission.parse(body(factories.admission_review(factories.pod())), content_type)
        assert caught.value.status == 415

    def test_content_type_parameters_are_fine(self) -> None:
        review = factories.admission_review(factories.pod())
        assert admission.parse(body(review), "application/json; charset=utf-8").uid

    def test_deeply_nested_json_is_a_400_not_a_crash(self) -> None:
        with pytest.raises(admission.BadReview):
            admission.parse(b"[" * 100_000 + b"]" * 100_000)


class TestRespond:
    def test_allowed_echoes_version_and_uid(self) -> None:
        answer = admission.respond("admission.k8s.io/v1beta1", "abc", True)
        assert answer == {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
                          "response": {"uid": "abc", "allowed": True}}

    def test_denial_has_status_with_code_message_reason(self) -> None:
        answer = admission.respond("admission.k8s.io/v1", "abc", False, message="no")
        assert answer["response"]["status"] == {"code": 403, "message": "no",
                                                "reason": "Forbidden"}

    def test_patch_is_base64_json_patch(self) -> None:
        ops = [{"op": "add", "path": "/spec/tolerations", "value": []}]
        response = admission.respond("admission.k8s.io/v1", "u", True, patch=ops)["response"]
        assert response["patchType"] == "JSONPatch"
        assert json.loads(base64.b64decode(response["patch"])) == ops

    def test_empty_patch_sends_no_patch_fields(self) -> None:
        response = admission.respond("admission.k8s.io/v1", "u", True, patch=[])["response"]
        assert "patch" not in response and "patchType" not in response

    def test_warnings_are_capped(self) -> None:
        warnings = ["x" * 1000] + [f"warning {i}" for i in range(1000)]
        capped = admission.respond("admission.k8s.io/v1", "u", True,
                                   warnings=warnings)["response"]["warnings"]
        assert all(len(w) <= 256 for w in capped)
        assert sum(len(w) for w in capped) <= 4096
        assert capped[0].endswith("...")

    def test_warnings_are_single_lines(self) -> None:
        capped = admission.cap_warnings(["a\nb"])
        assert capped == ["a b"]

    @pytest.mark.parametrize(("key", "expected"), [
        ("violated-policies", "violated-policies"),
        ("mlgate.io/policy", "mlgate.io-policy"),
        ("-odd key!", "odd-key"),
        ("x" * 80, "x" * 63),
    ])
    def test_audit_annotation_keys_are_qualified_names(self, key: str, expected: str) -> None:
        assert admission.audit_key(key) == expected
