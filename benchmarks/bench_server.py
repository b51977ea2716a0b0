"""`mlgate serve` plus a floor route, for benchmarks: `python benchmarks/bench_server.py PORT
CERT KEY [CONFIG]`.

The floor (`POST /floor`) parses the AdmissionReview exactly as the real routes do and
answers allowed, so floor vs. real route isolates what the policies and the engine cost.
"""

from __future__ import annotations

import json
import sys

from fastapi import Request
from fastapi.responses import Response

from webhook import admission, server
from webhook.runtime import Runtime


def main() -> None:
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    config_path = sys.argv[4] if len(sys.argv) > 4 else None
    uv = server.build(Runtime(config_path), server.Path(cert), server.Path(key), "127.0.0.1",
                      port, log_level="warning")
    app = uv.config.app

    @app.post("/floor")
    async def floor(request: Request) -> Response:
        parsed = admission.parse(await request.body(), request.headers.get("content-type"))
        answer = admission.respond(parsed.api_version, parsed.uid, True)
        return Response(json.dumps(answer, separators=(",", ":")).encode(),
                        media_type="application/json")

    uv.run()


if __name__ == "__main__":
    main()
