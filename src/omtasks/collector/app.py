"""The collector's HTTP API (SPEC 9): an ASGI app on Starlette, served by uvicorn.

`POST /v1/push` stores a node's push once per uuid (201 stored, 200 already
stored), so the outbox may resend freely: it sends at least once, the
collector stores exactly once.  `GET /v1/services` answers the push with the
greatest `created_at` per (service, node, kind), so a retried old push never
hides a newer one.  Every error answer is `{"error": "<one line>"}`.

Database calls are synchronous SQLAlchemy; they run in Starlette's thread pool
so a slow database never stalls the event loop.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from omtasks.collector import KINDS
from omtasks.collector.store import Push, latest_pushes, list_pushes, node_for_token, store_push

log = logging.getLogger("omtasks.collector")

#: the largest push body accepted; a config text is far smaller
MAX_BODY = 16 * 1024 * 1024


class Refused(Exception):
    """A request answered with an error status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_push(body: bytes) -> Push:
    """Validate a push body (SPEC 9); Refused(400) names the first problem."""
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Refused(400, "body must be a JSON object")
    for key in ("uuid", "node", "service", "kind", "created_at", "payload"):
        if key not in data:
            raise Refused(400, f"missing key '{key}'")
    for key in ("uuid", "node", "kind", "created_at"):
        if not isinstance(data[key], str) or not data[key]:
            raise Refused(400, f"'{key}' must be a non-empty string")
    if data["service"] is not None and (not isinstance(data["service"], str) or not data["service"]):
        raise Refused(400, "'service' must be a non-empty string or null")
    try:
        push_uuid = str(uuid.UUID(data["uuid"]))
    except ValueError:
        raise Refused(400, f"'uuid' is not a UUID: {data['uuid']!r}") from None
    if data["kind"] not in KINDS:
        raise Refused(400, f"unknown kind {data['kind']!r} (expected {', '.join(sorted(KINDS))})")
    try:
        created_at = datetime.fromisoformat(data["created_at"])
    except ValueError:
        created_at = None
    if created_at is None or created_at.tzinfo is None:
        raise Refused(400, f"'created_at' is not ISO 8601 with an offset: {data['created_at']!r}")
    if not isinstance(data["payload"], dict):
        raise Refused(400, "'payload' must be a JSON object")
    return Push(uuid=push_uuid, node=data["node"], service=data["service"], kind=data["kind"],
                created_at=created_at, payload=data["payload"])


def create_app(engine: Engine) -> Starlette:
    """The collector app on `engine` (a store opened by `store.open_store`); disposed at shutdown."""

    async def authenticate(request: Request) -> str:
        """The node of the request's bearer token."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Refused(401, "missing bearer token")
        node = await run_in_threadpool(node_for_token, engine, token)
        if node is None:
            raise Refused(401, "bad token")
        return node

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            raise Refused(413, f"body larger than {MAX_BODY} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise Refused(413, f"body larger than {MAX_BODY} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def push(request: Request) -> Response:
        client = request.client.host if request.client else "?"
        node = None
        try:
            node = await authenticate(request)
            received = parse_push(await read_body(request))
            if received.node != node:
                raise Refused(403, f"the token belongs to node '{node}', not '{received.node}'")
        except Refused as exc:
            log.warning("push refused (%d) from %s, node %s: %s", exc.status, client, node or "?", exc.reason)
            return error(exc.status, exc.reason)
        if await run_in_threadpool(store_push, engine, received):
            return JSONResponse({"uuid": received.uuid, "stored": True}, status_code=201)
        return JSONResponse({"uuid": received.uuid, "stored": False}, status_code=200)

    async def services(request: Request) -> Response:
        try:
            await authenticate(request)
        except Refused as exc:
            return error(exc.status, exc.reason)
        return JSONResponse(await run_in_threadpool(latest_pushes, engine))

    async def pushes(request: Request) -> Response:
        try:
            await authenticate(request)
        except Refused as exc:
            return error(exc.status, exc.reason)
        q = request.query_params
        found = await run_in_threadpool(
            lambda: list_pushes(engine, service=q.get("service"), node=q.get("node"), kind=q.get("kind")))
        return JSONResponse(found)

    async def http_error(_request: Request, exc: HTTPException) -> Response:
        return error(exc.status_code, str(exc.detail).splitlines()[0])

    async def server_error(_request: Request, exc: Exception) -> Response:
        log.error("internal error: %s", exc, exc_info=exc)
        return error(500, "internal error")

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            engine.dispose()

    return Starlette(
        routes=[
            Route("/v1/push", push, methods=["POST"]),
            Route("/v1/services", services, methods=["GET"]),
            Route("/v1/pushes", pushes, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )


def serve(engine: Engine, host: str, port: int) -> None:
    """Run the collector until SIGTERM/SIGINT; refusals are logged to stderr."""
    import uvicorn

    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s collector %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    uvicorn.run(create_app(engine), host=host, port=port, log_level="warning")
