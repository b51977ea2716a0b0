"""`mlgate serve` plus a floor route, for benchmarks:
`python benchmarks/bench_server.py PORT CERT KEY DATA_DIR|- [CONFIG|- [WORKERS]]`.

With a DATA_DIR the server is set up as `mlgate serve` sets itself up: JSON decision
logs at INFO (to DATA_DIR/server.log), the SQLite journal in DATA_DIR, metrics. With `-`
the journal and the decision log are off (metrics stay), to see the engine alone. The
floor (`POST /floor`) parses the AdmissionReview exactly as the real routes do and
answers allowed, so floor vs. real route is what the engine, the policies, the journal,
logs and metrics cost.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fastapi import Request
from fastapi.responses import Response

from webhook import admission, logs, server
from webhook.runtime import Runtime


def main() -> None:
    port, cert, key, data_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    config_path = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] != "-" else None
    workers = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    if data_dir == "-":
        data_dir = None
    else:
        logs.configure("info", open(Path(data_dir) / "server.log", "a"))  # noqa: SIM115
    runtime = Runtime(config_path)
    runtime.load()
    uv = server.build(runtime, Path(cert), Path(key), "127.0.0.1", port, data_dir=data_dir)
    app = uv.config.app

    @app.post("/floor")
    async def floor(request: Request) -> Response:
        parsed = admission.parse(await request.body(), request.headers.get("content-type"))
        answer = admission.respond(parsed.api_version, parsed.uid, True)
        return Response(json.dumps(answer, separators=(",", ":")).encode(),
                        media_type="application/json")

    server.serve(uv, workers)


if __name__ == "__main__":
    main()
