"""The no-op baseline of bench/stream.py: a minimal FastAPI app with the streaming inlets' two routes.

Each route reads the body, parses it with orjson (as the inlets do) and answers a small JSON: 200 for
one message, 207 for ``{"messages": [...]}``. Nothing is validated, routed or stored, so the gap between
this app and Headwater is what ingestion itself costs. It runs under uvicorn with the same settings as
``headwater serve`` (app factory, log level, no access log, ``--workers``):

    .venv/bin/python bench/noop_app.py --port 8090 [--workers 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response


def create_app() -> FastAPI:
    app = FastAPI(title="no-op inlet")

    @app.post("/collection/{inlet_id}")
    async def one(inlet_id: str, request: Request) -> Response:
        orjson.loads(await request.body())
        return Response(orjson.dumps({"inletId": inlet_id}), media_type="application/json")

    @app.post("/collection/batch/{inlet_id}")
    async def batch(inlet_id: str, request: Request) -> Response:
        parsed = orjson.loads(await request.body())
        count = len(parsed.get("messages") or []) if isinstance(parsed, dict) else 0
        return Response(
            orjson.dumps({"inletId": inlet_id, "messages": count}),
            status_code=207,
            media_type="application/json",
        )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # The same call as `headwater serve` (headwater/cli.py), with its default log level.
    uvicorn.run(
        "noop_app:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
        app_dir=str(Path(__file__).parent),
    )


if __name__ == "__main__":
    main()
