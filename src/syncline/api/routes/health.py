"""Probes and metrics: /healthz (alive), /readyz (able to serve), /metrics (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import syncline.metrics  # noqa: F401  (importing registers the collectors)
from syncline import __version__
from syncline.api.context import Context

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/readyz", summary="Database reachable, migrations at head, capture and gateway up")
async def readyz(context: Context) -> JSONResponse:
    results = await context.readiness.run()
    ready = all(problem is None for problem in results.values())
    body: dict[str, Any] = {
        "status": "ready" if ready else "not ready",
        "checks": {name: problem or "ok" for name, problem in results.items()},
    }
    if context.node_name:
        body["node"] = context.node_name
    if context.capture_role is not None:
        # Exactly one node of a cluster leads capture; the others stand by, ready.
        body["capture"] = context.capture_role()
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
