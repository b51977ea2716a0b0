"""Drive a running server with wrk (Debian) and read its figures: requests/s, p50, p99.

Shared by the benchmarks: each one starts its servers, then calls `run_wrk` for every
route it measures, in alternating rounds, and reports medians and ratios to a floor.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class Figures:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    non_2xx: int


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(f"cannot read a latency from wrk: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse(output: str) -> Figures:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(
        r"(?:connect|read|write|timeout) (\d+)", output.split("Socket errors:")[-1])) \
        if "Socket errors:" in output else 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Figures(rps, p50, p99, errors, int(non_2xx.group(1)) if non_2xx else 0)


def wrk_binary() -> str:
    """The path of wrk, or a clear exit naming the install step when it is missing."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (scripts/install-tools)")
    return wrk


def pinned(command: list[str], cpus: str | None) -> list[str]:
    """`command` run on the CPUs `cpus` (taskset's list, e.g. "1") when given."""
    return ["taskset", "-c", cpus, *command] if cpus else command


def run_wrk(url: str, body: dict[str, Any] | bytes, connections: int = 32,
            duration: float = 10.0, threads: int = 1, cpus: str | None = None) -> Figures:
    """POST `body` to `url` as fast as `connections` keep-alive connections allow
    (wrk on the CPUs `cpus` when given)."""
    wrk = wrk_binary()
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "body.json"
        body_file.write_bytes(payload)
        script = Path(tmp) / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'local f = io.open("{body_file}", "rb")\n'
            "wrk.body = f:read('*a')\nf:close()\n")
        result = subprocess.run(
            pinned([wrk, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency",
                    "-s", str(script), url], cpus), capture_output=True, text=True,
            check=True, timeout=duration + 60)
    return parse(result.stdout)


def median(figures: list[Figures]) -> Figures:
    return Figures(
        statistics.median(f.requests_per_second for f in figures),
        statistics.median(f.p50_ms for f in figures),
        statistics.median(f.p99_ms for f in figures),
        sum(f.errors for f in figures),
        sum(f.non_2xx for f in figures),
    )
