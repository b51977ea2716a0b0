"""Fail fast under overload (issue 12, point 3): past `maxInFlight` admission requests being
evaluated, the excess is answered 503 at once, so that the API server applies the webhook's
failure policy now instead of after its timeout. Real server over TLS, with a policy that
takes 1 s, so that work piles up."""

from __future__ import annotations

import concurrent.futures
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from tests import factories
from tests.server import running_server

pytestmark = pytest.mark.integration

SLOW = textwrap.dedent('''
    import time

    from webhook import policy

    class Slow(policy.ValidatingPolicy[policy.Params]):
        """Takes a second, as a policy waiting on a slow registry would."""
        name = "slow"
        blocking = True

        def validate(self, workload):
            time.sleep(1.0)
            return []
''')
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
       "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def test_the_excess_over_max_in_flight_is_a_503_at_once(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "slow.py").write_text(SLOW)
    cfg = tmp_path / "mlgate.yaml"
    cfg.write_text(yaml.safe_dump({
        "policyPaths": [str(tmp_path / "policies")], "maxInFlight": 3,
        "policies": {"slow": {"mode": "enforce", "timeout": "3s", "failure": "ignore"}}}))
    with running_server(tmp_path, config=cfg) as server:

        def call(_: int) -> tuple[int, float, str]:
            with server.client() as client:
                started = time.monotonic()
                answer = client.post("/validate", json=factories.admission_review(POD))
                return answer.status_code, time.monotonic() - started, answer.text

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            results = list(pool.map(call, range(12)))
        served = [r for r in results if r[0] == 200]
        refused = [r for r in results if r[0] == 503]
        assert len(served) >= 3 and len(served) + len(refused) == 12, results
        assert len(refused) >= 6, results
        # refused at once: before any served request, which takes the policy's 1 s
        assert max(took for _, took, _ in refused) < min(took for _, took, _ in served), results
        assert "maxInFlight" in refused[0][2]
        print(f"{len(refused)} of 12 refused, slowest refusal after "
              f"{max(took for _, took, _ in refused) * 1000:.0f} ms")
        with server.client() as client:  # and served again once the pile is gone
            assert client.post("/validate", json=factories.admission_review(POD)).is_success
            metrics = client.get("/metrics").text
        assert "mlgate_admission_overloaded_total" in metrics
