"""Certificate rotation under load: the real server, Debian's `wrk`, files replaced mid-run.

Two wrk runs hit POST /validate over HTTPS at once: one on kept-alive connections (they
must carry on) and one with `Connection: close`, so every request is a new handshake that
must pick up whichever certificate is current. The serving certificate is replaced four
times with new ones from the same CA, in both write orders. Zero socket errors, zero
non-2xx answers, and new connections see each new certificate.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests import factories
from tests.certs import peer
from tests.server import running_server
from webhook import certs

pytestmark = pytest.mark.integration

SUMMARY = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format(
    'SUMMARY {"requests": %%d, "connect": %%d, "read": %%d, "write": %%d, "timeout": %%d, '
    .. '"status": %%d}\\n', summary.requests, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.errors.status))
end
"""


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.rotating")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _summary(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith("SUMMARY "))
    summary: dict[str, int] = json.loads(line.removeprefix("SUMMARY "))
    return summary


def test_rotation_under_load_fails_no_request(tmp_path: Path) -> None:
    wrk = shutil.which("wrk")
    assert wrk, "wrk is not installed: run scripts/install-tools (Debian package wrk)"
    script = tmp_path / "validate.lua"
    body = json.dumps(factories.admission_review(factories.pod()))
    script.write_text(SUMMARY % body)
    with running_server(tmp_path) as server:
        ca_pem = server.ca.read_bytes()
        ca_key_pem = (server.ca.parent / certs.CA_KEY_FILE).read_bytes()
        url = f"{server.url}/validate"
        common = [wrk, "-t1", "-c4", "-d14s", "--timeout", "10s", "-s", str(script)]
        loads = [subprocess.Popen([*common, url], stdout=subprocess.PIPE, text=True),
                 subprocess.Popen([*common, "-H", "Connection: close", url],
                                  stdout=subprocess.PIPE, text=True)]
        try:
            time.sleep(1)
            issued = []
            for rotation in range(4):
                new = certs.issue(ca_pem, ca_key_pem, "mlgate", "mlgate-system")
                serial = x509.load_pem_x509_certificate(new.cert_pem).serial_number
                first, second = ((server.cert, new.cert_pem), (server.key, new.key_pem))
                if rotation % 2:  # the certificate before its key: the harder order
                    first, second = second, first
                _replace(*first)
                time.sleep(1.3)  # longer than the 1 s reload tick: one lands in between
                _replace(*second)
                deadline = time.monotonic() + 15
                while peer.certificate(server.port, ca_pem,
                                       "mlgate.mlgate-system.svc").serial_number != serial:
                    assert time.monotonic() < deadline, "the new certificate was never served"
                    time.sleep(0.1)
                issued.append(serial)
            outputs = [load.communicate(timeout=60)[0] for load in loads]
        finally:
            for load in loads:
                if load.poll() is None:
                    load.kill()
                    load.wait()
        kept_alive, reconnecting = (_summary(output) for output in outputs)
        for name, summary in (("kept-alive", kept_alive), ("reconnecting", reconnecting)):
            print(f"wrk {name}: {summary}")
            assert summary["requests"] > 0, name
            failures = {k: v for k, v in summary.items() if k != "requests" and v}
            assert failures == {}, f"{name} run: {summary}\n{server.output()[-3000:]}"
        assert len(set(issued)) == 4
        latest = peer.certificate(server.port, ca_pem, "mlgate.mlgate-system.svc")
        assert latest.serial_number == issued[-1]
        with server.client() as client:
            assert client.get("/readyz").status_code == 200
