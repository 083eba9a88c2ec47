"""The collector's HTTP API (SPEC 9), fleet page and metrics: an ASGI app on Starlette, served by uvicorn.

`POST /v1/push` stores a node's push once per uuid (201 stored, 200 already
stored), so the outbox may resend freely: it sends at least once, the
collector stores exactly once.  `GET /v1/services` answers the push with the
greatest `created_at` per (service, node, kind), so a retried old push never
hides a newer one.  Every error answer of `/v1/` is `{"error": "<one line>"}`.

Pushes are written by one writer thread that commits whatever has queued up
in one transaction (group commit): under load a commit, the costly part on
SQLite and PostgreSQL alike, serves many pushes.  Reads run in Starlette's
thread pool, so a slow database never stalls the event loop.  People use the
fleet page (`GET /`) and `GET /metrics` with a viewer's password (HTTP basic
auth), never with a node token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from omtasks.collector import KINDS
from omtasks.collector.store import (
    Limits,
    Push,
    QuotaExceeded,
    fleet,
    latest_plan,
    load,
    metric_rows,
    node_for_token,
    prune,
    pushes_plan,
    service_view,
    store_pushes,
    token_digest,
    viewer_hash,
)

log = logging.getLogger("omtasks.collector")

#: the largest push body accepted by default (`--max-push-mib`); a config text is far smaller
MAX_BODY = 16 * 1024 * 1024
#: how far ahead of the collector's clock a push's `created_at` may be: more is refused (400)
MAX_SKEW = timedelta(minutes=5)
#: how deep a payload may nest objects and arrays
MAX_DEPTH = 32
#: the longest service name accepted (a node config refuses longer ones long before)
MAX_NAME = 255
#: `limit` of GET /v1/services and /v1/pushes: default and bound; a page also stops at PAGE_BYTES of payload
DEFAULT_LIMIT, MAX_LIMIT = 500, 5000
PAGE_BYTES = 4 * 1024 * 1024
#: pages of more than SMALL_PAGE bytes are loaded BIG_PAGES at a time, which bounds the memory of reads
SMALL_PAGE, BIG_PAGES = 256 * 1024, 2
#: the most pushes committed in one transaction by the writer
BATCH = 256
#: rows per list on the fleet page
FLEET_ROWS = 200
#: /metrics answers a snapshot at most this old, rebuilt in the background meanwhile
METRICS_TTL = 10.0
#: how often retention runs
PRUNE_EVERY = 60.0

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class Settings:
    """What `om collector serve` options set (docs/collector.md)."""

    max_push_bytes: int = MAX_BODY
    quota_bytes: int = 1024**3
    retention: timedelta = timedelta(days=7)


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


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _too_deep(value: Any, bound: int) -> bool:
    """Whether `value` nests containers deeper than `bound` (iterative: no recursion on hostile input)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > bound:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def parse_push(body: bytes, now: datetime | None = None) -> Push:
    """Validate a push body (SPEC 9); Refused(400) names the first problem."""
    try:
        data = json.loads(body, parse_constant=_reject_constant, parse_float=_finite)
    except RecursionError:
        raise Refused(400, f"body nests deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, f"body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise Refused(400, "body must be a JSON object")
    for key in ("uuid", "node", "service", "kind", "created_at", "payload"):
        if key not in data:
            raise Refused(400, f"missing key '{key}'")
    for key in ("uuid", "node", "kind", "created_at"):
        if not isinstance(data[key], str) or not data[key]:
            raise Refused(400, f"'{key}' must be a non-empty string")
    service = data["service"]
    if service is not None and (not isinstance(service, str) or not service):
        raise Refused(400, "'service' must be a non-empty string or null")
    # not printable: control characters, and lone surrogates too (no database can store those)
    if service is not None and (len(service) > MAX_NAME or not service.isprintable()):
        raise Refused(400, f"'service' is not a name: {service[:MAX_NAME]!r}")
    try:
        push_uuid = str(uuid.UUID(data["uuid"]))
    except ValueError:
        raise Refused(400, f"'uuid' is not a UUID: {data['uuid'][:64]!r}") from None
    if data["kind"] not in KINDS:
        raise Refused(400, f"unknown kind {data['kind'][:64]!r} (expected {', '.join(sorted(KINDS))})")
    try:
        created_at = datetime.fromisoformat(data["created_at"])
        if created_at.tzinfo is None:
            raise ValueError
        created_at.astimezone(UTC)
    except (ValueError, OverflowError):
        raise Refused(400, f"'created_at' is not ISO 8601 with an offset, in range: "
                           f"{data['created_at'][:64]!r}") from None
    now = now or datetime.now(UTC)
    if created_at - now > MAX_SKEW:
        raise Refused(400, f"'created_at' {data['created_at']} is ahead of the collector's clock "
                           f"({now.isoformat(timespec='seconds')}) by more than {int(MAX_SKEW.total_seconds())} s")
    payload = data["payload"]
    if not isinstance(payload, dict):
        raise Refused(400, "'payload' must be a JSON object")
    if _too_deep(payload, MAX_DEPTH):
        raise Refused(400, f"'payload' nests deeper than {MAX_DEPTH} levels")
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise Refused(400, "'payload' holds a lone surrogate (not valid Unicode)") from None
    return Push(uuid=push_uuid, node=data["node"], service=service, kind=data["kind"],
                created_at=created_at, payload=payload, payload_text=text, size=size)


class Writer:
    """The one thread that writes pushes: it commits every push queued meanwhile in one transaction."""

    def __init__(self, engine: Engine, limits: Limits) -> None:
        self.engine = engine
        self.limits = limits
        self.queue: queue.SimpleQueue[tuple[Push, asyncio.AbstractEventLoop, asyncio.Future] | None] = \
            queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="collector-writer", daemon=True)
        self.thread.start()

    async def store(self, push: Push) -> bool | str | Exception:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.queue.put((push, loop, future))
        return await future

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < BATCH:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                results: list[Any] = store_pushes(self.engine, [b[0] for b in batch], self.limits)
            except Exception as exc:  # a database failure fails this batch's requests, never the thread
                log.error("storing %d push(es) failed: %s", len(batch), exc)
                results = [exc] * len(batch)
            for (_push, loop, future), result in zip(batch, results, strict=True):
                loop.call_soon_threadsafe(_settle, future, result)
            if stop:
                return


def _settle(future: asyncio.Future, result: Any) -> None:
    if not future.done():
        future.set_result(result)


class MetricsCache:
    """The /metrics text, rebuilt in the background once older than METRICS_TTL (stale-while-revalidate).

    Building the text for 100,000 tasks takes seconds; a scrape must not.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.text: bytes | None = None
        self.built = 0.0
        self.lock = threading.Lock()
        self.building = False

    def _build(self) -> None:
        try:
            from omtasks.collector.metrics import render

            text = render(*metric_rows(self.engine))
            with self.lock:
                self.text, self.built = text, time.monotonic()
        finally:
            with self.lock:
                self.building = False

    def start_refresh(self) -> None:
        """Start a rebuild in the background unless one runs."""
        with self.lock:
            if self.building:
                return
            self.building = True
        threading.Thread(target=self._build, name="collector-metrics", daemon=True).start()

    async def get(self) -> bytes:
        if self.text is None:
            with self.lock:
                building = self.building
                self.building = True
            if not building:
                await run_in_threadpool(self._build)
            while self.text is None:
                await asyncio.sleep(0.05)
                if not self.building and self.text is None:
                    raise RuntimeError("building the metrics failed")
        elif time.monotonic() - self.built > METRICS_TTL:
            self.start_refresh()
        return self.text


def _age(dt: datetime | None, now: datetime) -> str:
    if dt is None:
        return "-"
    seconds = int((now - dt).total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _when(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%SZ") if dt is not None else "-"


def create_app(engine: Engine, settings: Settings | None = None) -> Starlette:
    """The collector app on `engine` (a store opened by `store.open_store`); disposed at shutdown."""
    from starlette.templating import Jinja2Templates

    settings = settings or Settings()
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters["when"] = _when
    state: dict[str, Any] = {}
    tokens: dict[str, str] = {}  # digest -> node; the writer re-checks in its transaction
    viewers: set[tuple[str, str]] = set()  # (stored hash, sha256 of a password that matched it)
    big_pages = asyncio.Semaphore(BIG_PAGES)
    metrics = MetricsCache(engine)

    async def authenticate(request: Request, cached: bool = False) -> tuple[str, str]:
        """The node and token digest of the request's bearer token.

        `cached` (pushes only) may answer from the digests seen before: the writer
        re-checks them in the storing transaction.  Reads always ask the database.
        """
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Refused(401, "missing bearer token")
        digest = token_digest(token)
        node = tokens.get(digest) if cached else None
        if node is None:
            node = await run_in_threadpool(node_for_token, engine, token)
            if node is None:
                raise Refused(401, "bad token")
            tokens[digest] = node
        return node, digest

    async def viewer(request: Request) -> Response | None:
        """None when the request carries a viewer's name and password, else the 401 challenge."""
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                name, colon, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                colon = ""
            if colon:
                stored = await run_in_threadpool(viewer_hash, engine, name)
                if stored is not None:
                    key = (stored, hashlib.sha256(password.encode("utf-8", "surrogatepass")).hexdigest())
                    if key in viewers:
                        return None
                    from omtasks.collector.store import check_password

                    if await run_in_threadpool(check_password, password, stored):
                        viewers.add(key)
                        return None
        return Response("viewer name and password required (om collector add-viewer NAME)\n", status_code=401,
                        headers={"WWW-Authenticate": 'Basic realm="om collector", charset="UTF-8"'},
                        media_type="text/plain")

    async def read_body(request: Request) -> bytes:
        limit = settings.max_push_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise Refused(413, f"body larger than {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"body larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def push(request: Request) -> Response:
        client = request.client.host if request.client else "?"
        node = None
        try:
            node, digest = await authenticate(request, cached=True)
            received = parse_push(await read_body(request))
            if received.node != node:
                raise Refused(403, f"the token belongs to node '{node}', not '{received.node[:64]}'")
            result = await state["writer"].store(replace(received, token_sha256=digest))
            if result == "token":
                tokens.pop(digest, None)
                raise Refused(401, "bad token")
            if isinstance(result, QuotaExceeded):
                raise Refused(413, str(result))
            if isinstance(result, Exception):
                raise result
        except Refused as exc:
            log.warning("push refused (%d) from %s, node %s: %s", exc.status, client, node or "?", exc.reason)
            return error(exc.status, exc.reason)
        if result:
            return JSONResponse({"uuid": received.uuid, "stored": True}, status_code=201)
        return JSONResponse({"uuid": received.uuid, "stored": False}, status_code=200)

    def page_args(request: Request, after_int: bool) -> tuple[Any, int]:
        q = request.query_params
        raw_limit = q.get("limit", str(DEFAULT_LIMIT))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise Refused(400, f"'limit' must be an integer from 1 to {MAX_LIMIT}: {raw_limit[:32]!r}")
        after = q.get("after")
        if after is not None:
            bad = Refused(400, f"'after' is not a cursor of this listing: {after[:64]!r}")
            if after_int:
                if not after.isdigit() or len(after) > 18:
                    raise bad
                return int(after), int(raw_limit)
            try:
                key = json.loads(after)
            except ValueError:
                raise bad from None
            if not (isinstance(key, list) and len(key) == 3 and all(isinstance(k, str) for k in key)):
                raise bad
            return key, int(raw_limit)
        return None, int(raw_limit)

    async def paged(request: Request, plan: Any, after_int: bool) -> Response:
        try:
            await authenticate(request)
            after, limit = page_args(request, after_int)
        except Refused as exc:
            return error(exc.status, exc.reason)
        chosen = await run_in_threadpool(plan, after, limit)
        release = None
        if chosen.nbytes > SMALL_PAGE:  # a big page is loaded BIG_PAGES at a time: bounded memory
            await big_pages.acquire()
            release = BackgroundTask(big_pages.release)
        try:
            body = b"".join(await run_in_threadpool(load, engine, chosen.ids))
        except BaseException:
            if release is not None:
                big_pages.release()
            raise
        headers = {}
        if chosen.next_after is not None:
            from urllib.parse import urlencode

            params = dict(request.query_params)
            params.update(after=chosen.next_after, limit=str(limit))
            headers["Link"] = f'<{request.url.path}?{urlencode(params)}>; rel="next"'
        return Response(body, media_type="application/json", headers=headers, background=release)

    async def services(request: Request) -> Response:
        return await paged(request, lambda after, limit: latest_plan(
            engine, after=after, limit=limit, max_bytes=PAGE_BYTES), after_int=False)

    async def pushes(request: Request) -> Response:
        q = request.query_params
        return await paged(request, lambda after, limit: pushes_plan(
            engine, service=q.get("service"), node=q.get("node"), kind=q.get("kind"),
            after=after, limit=limit, max_bytes=PAGE_BYTES), after_int=True)

    async def fleet_page(request: Request) -> Response:
        if (challenge := await viewer(request)) is not None:
            return challenge
        view = await run_in_threadpool(fleet, engine, limit=FLEET_ROWS)
        now = datetime.now(UTC).replace(tzinfo=None)
        return templates.TemplateResponse(request, "fleet.html", {
            **view, "now": now, "age": lambda dt: _age(dt, now), "rows": FLEET_ROWS})

    async def service_page(request: Request) -> Response:
        if (challenge := await viewer(request)) is not None:
            return challenge
        name = request.path_params["name"]
        view = await run_in_threadpool(lambda: service_view(engine, name, limit=FLEET_ROWS))
        if view is None:
            return templates.TemplateResponse(request, "missing.html", {"service": name}, status_code=404)
        now = datetime.now(UTC).replace(tzinfo=None)
        return templates.TemplateResponse(request, "service.html", {
            **view, "service": name, "now": now, "age": lambda dt: _age(dt, now)})

    async def metrics_page(request: Request) -> Response:
        if (challenge := await viewer(request)) is not None:
            return challenge
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(await metrics.get(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error(exc.status_code, str(exc.detail).splitlines()[0])

    async def server_error(_request: Request, exc: Exception) -> Response:
        log.error("internal error: %s", exc, exc_info=exc)
        return error(500, "internal error")

    def retention(stop: threading.Event) -> None:
        while not stop.wait(PRUNE_EVERY):
            try:
                if deleted := prune(engine, settings.retention):
                    log.info("retention: deleted %d push(es) received more than %s ago", deleted,
                             settings.retention)
            except Exception as exc:  # the next round retries; ingest goes on
                log.error("retention failed: %s", exc)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state["writer"] = Writer(engine, Limits(quota_bytes=settings.quota_bytes))
        stop = threading.Event()
        pruner = threading.Thread(target=retention, args=(stop,), name="collector-retention", daemon=True)
        pruner.start()
        try:
            yield
        finally:
            stop.set()
            state["writer"].close()
            pruner.join(timeout=30)
            engine.dispose()

    return Starlette(
        routes=[
            Route("/", fleet_page, methods=["GET"]),
            Route("/services/{name:path}", service_page, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
            Route("/v1/push", push, methods=["POST"]),
            Route("/v1/services", services, methods=["GET"]),
            Route("/v1/pushes", pushes, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )


def serve(engine: Engine, host: str, port: int, settings: Settings | None = None) -> None:
    """Run the collector until SIGTERM/SIGINT; refusals are logged to stderr."""
    import uvicorn

    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s collector %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    uvicorn.run(create_app(engine, settings), host=host, port=port, log_level="warning")
