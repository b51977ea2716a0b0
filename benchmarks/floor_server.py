"""The framework's floor: a bare FastAPI app under uvicorn, as a user could run instead of
mlgate: `python benchmarks/floor_server.py PORT CERT KEY`.

It parses the AdmissionReview with orjson and answers allowed, on /validate and /mutate,
with the uvicorn settings `mlgate serve` uses (httptools, uvloop, TLS, no access log).
No mlgate code runs in it, so mlgate's routes against it measure everything mlgate adds.
A dry-run review (`request.dryRun`) is answered with DRY_RUN_WARNING too, so that
benchmarks/apiserver.py can tell with a server dry run that the API server calls the floor.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

DRY_RUN_WARNING = "mlgate benchmark floor webhook"

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


async def _allow(request: Request) -> Response:
    review = orjson.loads(await request.body())
    answer: dict[str, Any] = {
        "apiVersion": review["apiVersion"], "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], "allowed": True}}
    if review["request"].get("dryRun"):
        answer["response"]["warnings"] = [DRY_RUN_WARNING]
    return Response(orjson.dumps(answer), media_type="application/json")


app.post("/validate")(_allow)
app.post("/mutate")(_allow)


@app.get("/readyz")
async def readyz() -> Response:
    return Response(b'{"status":"ready"}', media_type="application/json")


def main() -> None:
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", loop="uvloop",
                ws="none", access_log=False, log_level="warning", server_header=False,
                ssl_certfile=cert, ssl_keyfile=key)


if __name__ == "__main__":
    main()
