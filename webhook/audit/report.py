"""The audit report in three shapes: JSON, one HTML page, and wgpolicyk8s.io PolicyReports.

JSON (`build`) answers: totals, per policy, per namespace, per user, the latest denials,
the violations the cluster scan found, and the configured exceptions (those expiring within
14 days apart) with the decisions they changed. HTML renders the same data with inline SVG
charts (denials over time, denials per policy), sortable tables and the filters as a
form: no external scripts, styles or fonts, and a Content-Security-Policy that forbids
them. PolicyReports (`policy_reports`) carry the scan's current results in the format
Kyverno and Kubewarden emit, one PolicyReport per namespace and one ClusterPolicyReport
for cluster-scoped objects; they describe the cluster as it is, so admission history
is not in them (as in Kyverno's reports).
"""

from __future__ import annotations

import datetime as dt
import html
import math
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from webhook import exceptions as exceptions_module
from webhook import schema
from webhook.audit import store as store_module

REPORT_API_VERSION = "wgpolicyk8s.io/v1alpha2"
SOURCE = "mlgate"
BUCKETS_MINUTES = (1, 5, 15, 60, 180, 360, 720, 1440, 10080)
MAX_BARS = 60
RECENT = 25
FILTER_KEYS = ("since", "until", "namespace", "policy", "kind", "user", "decision")


class BadFilter(ValueError):
    """A filter value the report cannot use (HTTP 400)."""


TIME_HELP = ("give a duration ago (24h, 7d), an RFC 3339 time (2025-01-31T12:00:00Z) or "
             "UNIX seconds")
LATEST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: the last second a report can print
MAX_TEXT = 1024  # characters of a namespace, policy, kind or user filter


def _seconds(value: str, now: float) -> float | None:
    """`value` as UNIX seconds: a duration before `now`, a number or an RFC 3339 time; None
    if it is none of them. May be out of range or not finite: the caller checks."""
    try:
        return now - schema.parse_duration(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    except (ValueError, OverflowError):
        return None


def parse_time(value: str, name: str, now: float) -> float | None:
    """`24h` (ago), an RFC 3339 time or UNIX seconds, between 1970 and 9999."""
    value = value.strip()
    if not value:
        return None
    seconds = _seconds(value, now)
    if seconds is None:
        raise BadFilter(f"{name}={_shown(value)}: {TIME_HELP}")
    if not (math.isfinite(seconds) and 0 <= seconds <= LATEST_TIME):
        raise BadFilter(f"{name}={_shown(value)}: out of range; {TIME_HELP}, between 1970 "
                        f"and 9999")
    return seconds


def _shown(value: str) -> str:
    """A parameter's value for a message: quoted, and cut when long."""
    return repr(value) if len(value) <= 40 else repr(value[:40]) + "..."


def _text(query: dict[str, str], name: str) -> str:
    value = query.get(name, "").strip()
    if "\x00" in value or len(value) > MAX_TEXT:
        raise BadFilter(f"{name}={_shown(value)}: must be at most {MAX_TEXT} characters "
                        f"without NUL")
    return value


def parse_filters(query: dict[str, str], now: float | None = None,
                  default_since: str = "24h") -> store_module.Filters:
    """The report's filters from a query string; `BadFilter` names the parameter."""
    now = time.time() if now is None else now
    decision = query.get("decision", "").strip()
    if decision and decision not in store_module.DECISIONS:
        raise BadFilter(f"decision={_shown(decision)}: must be one of "
                        f"{', '.join(store_module.DECISIONS)}")
    since = parse_time(query.get("since", default_since), "since", now)
    until = parse_time(query.get("until", ""), "until", now)
    if since is not None and until is not None and until <= since:
        raise BadFilter(f"until={_shown(query['until'])} must be after since="
                        f"{_shown(query.get('since', default_since))}")
    return store_module.Filters(
        since=since, until=until, namespace=_text(query, "namespace"),
        policy=_text(query, "policy"), kind=_text(query, "kind"), user=_text(query, "user"),
        decision=decision)


def bucket_minutes(filters: store_module.Filters, now: float) -> int:
    span = ((filters.until or now) - (filters.since or now - 86400)) / 60
    for minutes in BUCKETS_MINUTES:
        if span / minutes <= MAX_BARS:
            return minutes
    return BUCKETS_MINUTES[-1]


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fill(points: list[dict[str, Any]], minutes: int) -> list[dict[str, Any]]:
    """Empty buckets between the first and the last, so that bars keep a time scale."""
    if not points:
        return points
    by_start = {p["start"]: p for p in points}
    step = minutes * 60
    return [by_start.get(start) or {"start": start, **dict.fromkeys(store_module.DECISIONS, 0)}
            for start in range(points[0]["start"], points[-1]["start"] + step, step)]


def build(store: store_module.Store, filters: store_module.Filters,
          scan: dict[str, Any] | None = None, now: float | None = None,
          exceptions: Mapping[str, exceptions_module.PolicyException] | None = None,
          ) -> dict[str, Any]:
    """The JSON report. `exceptions`: the configured ones, to list with their expiry."""
    now = time.time() if now is None else now
    minutes = bucket_minutes(filters, now)
    denied = store_module.Filters(**{**filters.__dict__, "decision": "denied"})
    recent = [] if filters.decision not in ("", "denied") else store.records(denied, RECENT)
    violations = store.scan_results(namespace=filters.namespace, kind=filters.kind,
                                    policy=filters.policy, failing_only=True, limit=1000)
    return {
        "generated": _iso(now),
        "filters": {"since": _iso(filters.since) if filters.since else None,
                    "until": _iso(filters.until) if filters.until else None,
                    "namespace": filters.namespace, "policy": filters.policy,
                    "kind": filters.kind, "user": filters.user, "decision": filters.decision},
        "totals": store.totals(filters),
        "per_policy": store.per_policy(filters),
        "per_namespace": store.grouped("namespace", filters),
        "per_user": store.grouped("username", filters),
        "per_kind": store.grouped("kind", filters),
        "series": {"bucket_minutes": minutes,
                   "points": _fill(store.series(filters, minutes), minutes)},
        "recent_denials": [record for _, record in recent],
        "violations": violations,
        "scan": scan,
        "exceptions": _exceptions(store, filters, exceptions or {}, now),
    }


def _exceptions(store: store_module.Store, filters: store_module.Filters,
                configured: Mapping[str, exceptions_module.PolicyException],
                now: float) -> dict[str, Any]:
    """The configured exceptions (expiring within 14 days listed apart) and what they let
    through in the report's window."""
    listed = exceptions_module.summary(configured, now)
    return {
        "configured": listed,
        "expiring": [row for row in listed if row["state"] == "expiring"],
        "applied": store.exceptions_applied(filters),
        "recent": store.excepted_records(filters, RECENT),
    }


# -- HTML ------------------------------------------------------------------------------
STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;
background:#f6f7f9}header{background:#1d2430;color:#fff;padding:14px 24px}header a{color:#9cf}
h1{font-size:20px;margin:0}
main{padding:16px 24px;max-width:1300px}section{background:#fff;border:1px solid #dde1e6;
border-radius:6px;padding:12px 16px;margin:0 0 16px}h2{font-size:16px;margin:0 0 8px}
.tiles{display:flex;gap:12px;flex-wrap:wrap}.tile{background:#fff;border:1px solid #dde1e6;
border-radius:6px;padding:10px 16px;min-width:110px}.tile b{display:block;font-size:24px}
.denied b{color:#c62828}.warned b{color:#b26a00}.mutated b{color:#1565c0}.allowed b{color:#2e7d32}
form{display:flex;gap:8px;flex-wrap:wrap;align-items:end}label{display:flex;flex-direction:column;
font-size:12px;color:#555}input,select{padding:4px 6px;font:inherit}table{border-collapse:collapse;
width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceff3;vertical-align:top}
th{cursor:pointer;user-select:none;background:#f0f2f5}
th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}td.num{text-align:right;font-variant-numeric:
tabular-nums}.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px}.msg{white-space:pre-wrap;
font-family:ui-monospace,monospace;font-size:12px}.empty{color:#777}
svg text{font-size:11px;fill:#555}
"""

# Sort a table by a column on header click; `#sort=<table id>:<column>:<asc|desc>` in the
# URL sorts on load (bookmarks and the tests use it).
SCRIPT = """
function sortTable(table,col,dir){const body=table.tBodies[0];if(!body)return;
const rows=Array.from(body.rows);const num=table.tHead.rows[0].cells[col].dataset.type==="num";
rows.sort((a,b)=>{const x=a.cells[col].dataset.value??a.cells[col].textContent;
const y=b.cells[col].dataset.value??b.cells[col].textContent;
const c=num?(parseFloat(x)-parseFloat(y)):x.localeCompare(y);return dir==="asc"?c:-c;});
rows.forEach(r=>body.appendChild(r));
Array.from(table.tHead.rows[0].cells).forEach((th,i)=>th.setAttribute("aria-sort",
i===col?(dir==="asc"?"ascending":"descending"):"none"));}
document.querySelectorAll("table.sortable").forEach(table=>{
Array.from(table.tHead.rows[0].cells).forEach((th,i)=>th.addEventListener("click",()=>{
sortTable(table,i,th.getAttribute("aria-sort")==="ascending"?"desc":"asc");}));});
const m=/sort=([\\w-]+):(\\d+):(asc|desc)/.exec(location.hash);
if(m){const t=document.getElementById(m[1]);if(t)sortTable(t,parseInt(m[2]),m[3]);}
document.body.dataset.ready="1";
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _bar_chart_time(points: list[dict[str, Any]], minutes: int) -> str:
    """Denied (and warned) decisions per time bucket, as an inline SVG column chart."""
    width, height, left, bottom = 860, 220, 44, 28
    if not points:
        return '<p class="empty" id="chart-time-empty">No decisions in this window.</p>'
    top = max(max(p["denied"] + p["warned"] for p in points), 1)
    plot_w, plot_h = width - left - 10, height - bottom - 10
    slot = plot_w / len(points)
    bar_w = max(min(slot * 0.8, 40), 2)
    parts = [f'<svg id="chart-time" role="img" aria-label="denials over time" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f'<line x1="{left}" y1="{10 + plot_h}" x2="{width - 10}" y2="{10 + plot_h}" '
             f'stroke="#999"/>',
             f'<text x="{left - 6}" y="16" text-anchor="end">{top}</text>',
             f'<text x="{left - 6}" y="{10 + plot_h}" text-anchor="end">0</text>']
    for index, point in enumerate(points):
        x = left + index * slot + (slot - bar_w) / 2
        denied_h = plot_h * point["denied"] / top
        warned_h = plot_h * point["warned"] / top
        label = f"{_iso(point['start'])}: {point['denied']} denied, {point['warned']} warned"
        if point["denied"]:
            parts.append(f'<rect class="bar denied" data-count="{point["denied"]}" '
                         f'x="{x:.1f}" y="{10 + plot_h - denied_h:.1f}" width="{bar_w:.1f}" '
                         f'height="{denied_h:.1f}" fill="#c62828">'
                         f'<title>{_e(label)}</title></rect>')
        if point["warned"]:
            parts.append(f'<rect class="bar warned" data-count="{point["warned"]}" '
                         f'x="{x:.1f}" y="{10 + plot_h - denied_h - warned_h:.1f}" '
                         f'width="{bar_w:.1f}" height="{warned_h:.1f}" fill="#f0a020">'
                         f'<title>{_e(label)}</title></rect>')
    for index in (0, len(points) - 1):
        x = left + index * slot + slot / 2
        stamp = dt.datetime.fromtimestamp(points[index]["start"], dt.UTC)
        parts.append(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle">'
                     f'{stamp:%m-%d %H:%M}</text>')
    parts.append(f'<text x="{width - 10}" y="16" text-anchor="end">'
                 f'{minutes} min per bar, UTC</text></svg>')
    return "".join(parts)


def _bar_chart_policies(per_policy: list[dict[str, Any]]) -> str:
    """Denials and warnings per policy, as inline SVG horizontal bars."""
    rows = [p for p in per_policy if p["denied"] or p["warned"]][:15]
    if not rows:
        return '<p class="empty" id="chart-policies-empty">No policy denied or warned.</p>'
    width, row_h, left = 860, 24, 190
    height = row_h * len(rows) + 10
    top = max(max(p["denied"] + p["warned"] for p in rows), 1)
    plot_w = width - left - 60
    parts = [f'<svg id="chart-policies" role="img" aria-label="denials per policy" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'xmlns="http://www.w3.org/2000/svg">']
    for index, row in enumerate(rows):
        y = 5 + index * row_h
        denied_w = plot_w * row["denied"] / top
        warned_w = plot_w * row["warned"] / top
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">'
                     f'{_e(row["policy"])}</text>')
        parts.append(f'<rect class="bar denied" data-policy="{_e(row["policy"])}" '
                     f'data-count="{row["denied"]}" x="{left}" y="{y + 3}" '
                     f'width="{denied_w:.1f}" height="{row_h - 8}" fill="#c62828"/>')
        parts.append(f'<rect class="bar warned" data-policy="{_e(row["policy"])}" '
                     f'data-count="{row["warned"]}" x="{left + denied_w:.1f}" y="{y + 3}" '
                     f'width="{warned_w:.1f}" height="{row_h - 8}" fill="#f0a020"/>')
        parts.append(f'<text x="{left + denied_w + warned_w + 6:.1f}" y="{y + 15}">'
                     f'{row["denied"]} / {row["warned"]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(table_id: str, columns: list[tuple[str, str]], rows: list[list[Any]]) -> str:
    """A sortable table; columns are (title, "num" or "text")."""
    if not rows:
        return f'<p class="empty" id="{table_id}-empty">Nothing to show.</p>'
    head = "".join(f'<th data-type="{kind}" aria-sort="none">{_e(title)}</th>'
                   for title, kind in columns)
    body = []
    for row in rows:
        cells = []
        for (_, kind), value in zip(columns, row, strict=True):
            if kind == "num":
                cells.append(f'<td class="num" data-value="{_e(value)}">{_e(value)}</td>')
            elif kind == "time":
                cells.append(f'<td data-value="{_e(value)}">{_e(_iso(float(value)))}</td>')
            elif kind == "msg":
                cells.append(f'<td class="msg">{_e(value)}</td>')
            else:
                cells.append(f"<td>{_e(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _form(query: dict[str, str]) -> str:
    fields = []
    for key, hint in (("since", "24h"), ("until", ""), ("namespace", ""), ("policy", ""),
                      ("kind", ""), ("user", "")):
        fields.append(f'<label>{key}<input name="{key}" value="{_e(query.get(key, ""))}" '
                      f'placeholder="{hint}"></label>')
    options = "".join(
        f'<option value="{d}"{" selected" if query.get("decision") == d else ""}>'
        f'{d or "any"}</option>' for d in ("", *store_module.DECISIONS))
    fields.append(f'<label>decision<select name="decision">{options}</select></label>')
    return ('<form id="filters" method="get" action="/audit/report">'
            '<input type="hidden" name="format" value="html">' + "".join(fields) +
            '<button type="submit">Apply</button></form>')


def render_html(report: dict[str, Any], query: dict[str, str]) -> tuple[str, str]:
    """(page, Content-Security-Policy header) for the report."""
    nonce = secrets.token_urlsafe(16)
    csp = (f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
           f"img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
    totals = report["totals"]
    tiles = "".join(f'<div class="tile {name}" id="total-{name}"><b>{totals.get(name, 0)}</b>'
                    f'{name}</div>' for name in ("total", *store_module.DECISIONS))
    per_policy = _table("table-policies", [("policy", "text"), ("denied", "num"),
                                           ("warned", "num"), ("audited", "num"),
                                           ("excepted", "num"), ("mutated", "num"),
                                           ("errors", "num")],
                        [[p["policy"], p["denied"], p["warned"], p["audited"], p["excepted"],
                          p["mutated"], p["errors"]] for p in report["per_policy"]])
    count_columns = [("total", "num"), *((d, "num") for d in store_module.DECISIONS)]

    def counts(row: dict[str, Any]) -> list[Any]:
        return [row["total"], *(row[d] for d in store_module.DECISIONS)]

    per_namespace = _table("table-namespaces", [("namespace", "text"), *count_columns],
                           [[r["namespace"] or "(cluster)", *counts(r)]
                            for r in report["per_namespace"]])
    per_user = _table("table-users", [("user", "text"), *count_columns],
                      [[r["user"], *counts(r)] for r in report["per_user"]])
    denials = _table("table-denials", [("time", "time"), ("kind", "text"),
                                       ("namespace", "text"), ("name", "text"),
                                       ("user", "text"), ("message", "msg")],
                     [[r["time"], r["kind"], r["namespace"], r["name"], r["user"],
                       r["message"]] for r in report["recent_denials"]])
    violations = _table("table-violations", [("kind", "text"), ("namespace", "text"),
                                             ("name", "text"), ("policy", "text"),
                                             ("mode", "text"), ("message", "msg")],
                        [[v["kind"], v["namespace"], v["name"], f["policy"], f["mode"],
                          f["message"]] for v in report["violations"] for f in v["violations"]])
    excepted = report["exceptions"]
    configured = _table("table-exceptions", [
        ("exception", "text"), ("policies", "text"), ("owner", "text"), ("reason", "msg"),
        ("expires", "text"), ("state", "text"), ("days left", "num")],
        [[r["name"], ", ".join(r["policies"]), r["owner"], r["reason"], r["expires"],
          r["state"], r["days_left"]] for r in excepted["configured"]])
    expiring = "".join(
        f'<li class="expiring">{_e(r["name"])} ({_e(r["owner"])}) expires {_e(r["expires"])}, '
        f'in {r["days_left"]} days</li>' for r in excepted["expiring"])
    expiring_note = (f'<ul id="exceptions-expiring">{expiring}</ul>' if expiring else
                     f'<p class="empty">No exception expires within '
                     f'{exceptions_module.EXPIRING_DAYS} days.</p>')
    applied = _table("table-excepted", [("time", "time"), ("kind", "text"),
                                         ("namespace", "text"), ("name", "text"),
                                         ("user", "text"), ("exceptions", "text")],
                     [[r["time"], r["kind"], r["namespace"], r["name"], r["user"],
                       ", ".join(r.get("exceptions", []))] for r in excepted["recent"]])
    scan = report.get("scan")
    scan_note = ("The cluster scan is off (audit.scan.enabled)." if scan is None else
                 f"Last scan {_iso(scan['started'])}: {scan['objects']} objects, "
                 f"{scan['failing']} failing.")
    json_link = "/audit/report?" + urlencode({**{k: v for k, v in query.items()
                                                 if k in FILTER_KEYS}, "format": "json"})
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mlgate audit report</title><style nonce="{nonce}">{STYLE}</style></head>
<body><header><h1>mlgate audit report</h1>
<div>generated {_e(report["generated"])}; since {_e(report["filters"]["since"] or "the start")}
{f"until {_e(report['filters']['until'])}" if report["filters"]["until"] else ""}
&middot; <a href="{_e(json_link)}">JSON</a></div></header>
<main>
<section><h2>Filters</h2>{_form(query)}</section>
<div class="tiles">{tiles}</div><br>
<section><h2>Denials over time</h2>{_bar_chart_time(report["series"]["points"],
                                                     report["series"]["bucket_minutes"])}</section>
<section><h2>Denials per policy</h2>{_bar_chart_policies(report["per_policy"])}</section>
<section><h2>Policies</h2>{per_policy}</section>
<div class="grid"><section><h2>Namespaces</h2>{per_namespace}</section>
<section><h2>Users</h2>{per_user}</section></div>
<section><h2>Latest denials</h2>{denials}</section>
<section><h2>Exceptions</h2>{expiring_note}{configured}
<h2>Latest decisions an exception changed</h2>{applied}</section>
<section><h2>Running workloads that violate policies</h2><p>{_e(scan_note)}</p>{violations}
</section>
</main><script nonce="{nonce}">{SCRIPT}</script></body></html>"""
    return page, csp


# -- PolicyReport ----------------------------------------------------------------------
SEVERITY = {"enforce": "high", "warn": "medium", "audit": "low"}


def _result(policy: str, result: str, row: dict[str, Any], message: str,
            extra: dict[str, str] | None = None, severity: str | None = None) -> dict[str, Any]:
    resource = {"apiVersion": row["api_version"], "kind": row["kind"], "name": row["name"]}
    if row["namespace"]:
        resource["namespace"] = row["namespace"]
    seconds = int(row["scanned_at"])
    entry: dict[str, Any] = {
        "source": SOURCE, "policy": policy, "rule": policy, "result": result, "scored": True,
        "message": message, "resources": [resource],
        "timestamp": {"seconds": seconds, "nanos": int((row["scanned_at"] - seconds) * 1e9)},
        "category": "ML workloads",
    }
    if severity:
        entry["severity"] = severity
    if extra:
        entry["properties"] = {k: v for k, v in extra.items() if v}
    return entry


def _results(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One result per policy and object (as Kyverno: per rule and resource)."""
    by_policy: dict[str, list[dict[str, Any]]] = {}
    for violation in row["violations"]:
        by_policy.setdefault(violation["policy"], []).append(violation)
    results = []
    for policy, found in by_policy.items():
        modes = {v["mode"] for v in found}
        if any(v.get("error") for v in found):
            outcome = "error"
        elif "enforce" in modes:
            outcome = "fail"
        else:
            outcome = "warn"
        mode = "enforce" if "enforce" in modes else sorted(modes)[0]
        paths = ",".join(sorted({v.get("path") or "" for v in found} - {""}))
        containers = ",".join(sorted({v.get("container") or "" for v in found} - {""}))
        results.append(_result(policy, outcome, row, "\n".join(v["message"] for v in found),
                               {"paths": paths, "containers": containers, "mode": mode},
                               SEVERITY.get(mode, "info")))
    for policy in row["policies"]:
        if policy not in by_policy:
            results.append(_result(policy, "pass", row, "validation passed"))
    return results


def _summary(results: list[dict[str, Any]]) -> dict[str, int]:
    summary = dict.fromkeys(("pass", "fail", "warn", "error", "skip"), 0)
    for result in results:
        summary[result["result"]] += 1
    return summary


def policy_reports(store: store_module.Store, namespace: str = "", kind: str = "",
                   policy: str = "") -> dict[str, Any]:
    """A `List` of PolicyReports (one per namespace) and a ClusterPolicyReport."""
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for row in store.scan_results(namespace=namespace, kind=kind, policy=policy):
        results = _results(row)
        if policy:
            results = [r for r in results if r["policy"] == policy]
        by_namespace.setdefault(row["namespace"], []).extend(results)
    items = []
    for ns, results in sorted(by_namespace.items()):
        labels = {"app.kubernetes.io/managed-by": "mlgate"}
        if ns:
            items.append({"apiVersion": REPORT_API_VERSION, "kind": "PolicyReport",
                          "metadata": {"name": "mlgate-policyreport", "namespace": ns,
                                       "labels": labels},
                          "results": results, "summary": _summary(results)})
        else:
            items.append({"apiVersion": REPORT_API_VERSION, "kind": "ClusterPolicyReport",
                          "metadata": {"name": "mlgate-clusterpolicyreport", "labels": labels},
                          "results": results, "summary": _summary(results)})
    return {"apiVersion": "v1", "kind": "List", "items": items}
