"""Schemas for the custom resources the chart renders, which kubernetes-validate lacks.

kubernetes-validate ships the schemas of the built-in API only (its lookup for
`cert-manager.io/v1 Certificate` raises SchemaNotFoundError). These are written from the
CRD references of cert-manager v1 (Issuer, Certificate) and prometheus-operator
monitoring.coreos.com/v1 (ServiceMonitor, PrometheusRule), limited to the fields a chart
sets, and strict: an unknown or mistyped field fails as it would in the API server's
structural-schema validation.
"""

from __future__ import annotations

from typing import Any

STRING: dict[str, Any] = {"type": "string"}
STRINGS: dict[str, Any] = {"type": "array", "items": STRING}
STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": STRING}
DURATION: dict[str, Any] = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"}


def _strict(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "required": required or []}


METADATA = {
    "type": "object",
    "properties": {"name": STRING, "namespace": STRING, "labels": STRING_MAP,
                   "annotations": STRING_MAP},
    "required": ["name"],
}


def _resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _strict({"apiVersion": {"const": api_version}, "kind": {"const": kind},
                    "metadata": METADATA, "spec": spec},
                   ["apiVersion", "kind", "metadata", "spec"])


ISSUER_REF = _strict({"name": STRING, "kind": {"enum": ["Issuer", "ClusterIssuer"]},
                      "group": STRING}, ["name"])

ISSUER = _resource("cert-manager.io/v1", "Issuer", {
    "type": "object",
    "properties": {
        "selfSigned": _strict({"crlDistributionPoints": STRINGS}),
        "ca": _strict({"secretName": STRING, "crlDistributionPoints": STRINGS}, ["secretName"]),
        "acme": {"type": "object"}, "vault": {"type": "object"}, "venafi": {"type": "object"},
    },
    "additionalProperties": False, "minProperties": 1, "maxProperties": 1,
})

USAGES = ["signing", "digital signature", "content commitment", "key encipherment",
          "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
          "decipher only", "any", "server auth", "client auth", "code signing",
          "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user",
          "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"]

CERTIFICATE = _resource("cert-manager.io/v1", "Certificate", _strict({
    "secretName": STRING, "commonName": STRING, "dnsNames": STRINGS, "ipAddresses": STRINGS,
    "uris": STRINGS, "duration": DURATION, "renewBefore": DURATION, "isCA": {"type": "boolean"},
    "usages": {"type": "array", "items": {"enum": USAGES}},
    "privateKey": _strict({"algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                           "size": {"type": "integer"},
                           "encoding": {"enum": ["PKCS1", "PKCS8"]},
                           "rotationPolicy": {"enum": ["Never", "Always"]}}),
    "issuerRef": ISSUER_REF,
    "secretTemplate": _strict({"labels": STRING_MAP, "annotations": STRING_MAP}),
}, ["secretName", "issuerRef"]))

SAFE_TLS = {"type": "object", "properties": {"insecureSkipVerify": {"type": "boolean"},
                                             "serverName": STRING}}

SERVICE_MONITOR = _resource("monitoring.coreos.com/v1", "ServiceMonitor", _strict({
    "selector": {"type": "object", "properties": {"matchLabels": STRING_MAP,
                                                  "matchExpressions": {"type": "array"}}},
    "namespaceSelector": _strict({"any": {"type": "boolean"}, "matchNames": STRINGS}),
    "jobLabel": STRING,
    "endpoints": {"type": "array", "items": _strict({
        "port": STRING, "targetPort": {"type": ["string", "integer"]}, "path": STRING,
        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
        "interval": DURATION, "scrapeTimeout": DURATION, "tlsConfig": SAFE_TLS,
        "bearerTokenFile": STRING, "honorLabels": {"type": "boolean"},
    })},
}, ["selector", "endpoints"]))

RULE = _strict({
    "alert": STRING, "record": STRING, "expr": {"type": ["string", "integer"]},
    "for": DURATION, "keep_firing_for": DURATION, "labels": STRING_MAP,
    "annotations": STRING_MAP,
}, ["expr"])

PROMETHEUS_RULE = _resource("monitoring.coreos.com/v1", "PrometheusRule", _strict({
    "groups": {"type": "array", "items": _strict({
        "name": STRING, "interval": DURATION, "rules": {"type": "array", "items": RULE},
    }, ["name", "rules"])},
}))

SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("cert-manager.io/v1", "Issuer"): ISSUER,
    ("cert-manager.io/v1", "Certificate"): CERTIFICATE,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
}
