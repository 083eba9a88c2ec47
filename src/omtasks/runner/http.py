"""The HTTP client of deliveries (collector pushes, webhooks): httpx, one pooled client per delivery.

Timeouts: 5 s to connect, 10 s per read and per write, 5 s to get a pooled
connection, each cut to what is left of the delivery's budget.  httpx's
timeouts bound each socket operation, so a server trickling one byte every
4 s would never trip them: a watchdog timer shuts down every socket of the
client when the delivery's wall-clock budget runs out, and the request in
flight fails at once ("delivery budget of 30 s exhausted").

Proxies come from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`),
as with curl.  `verify` is a CA bundle path (node.conf `collector.ca`) or a
bool (`collector.verify`).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Any

import httpx

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
WRITE_TIMEOUT = 10.0
POOL_TIMEOUT = 5.0


class BudgetExhausted(Exception):
    """The delivery's wall-clock budget ran out during a request."""


class DeliveryClient:
    """An httpx.Client whose every request ends by `deadline` (time.monotonic()), whatever the server does."""

    def __init__(self, deadline: float, budget: float, verify: str | bool = True) -> None:
        self.deadline = deadline
        self.budget = budget
        self._streams: list[Any] = []
        self._lock = threading.Lock()
        self.fired = False
        if isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)
        self.client = httpx.Client(verify=verify, trust_env=True, follow_redirects=False)
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            with self._lock:
                self._streams.append(info.get("return_value"))
                if self.fired:
                    self._shutdown()

    def _shutdown(self) -> None:
        for stream in self._streams:
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._shutdown()

    def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST within the budget; BudgetExhausted when it ran out, httpx errors otherwise."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0 or self.fired:
            raise BudgetExhausted(f"delivery budget of {self.budget:g} s exhausted")
        # a little past the deadline: there the watchdog ends the request, with the clearer reason
        cut = remaining + 0.5
        timeout = httpx.Timeout(connect=min(CONNECT_TIMEOUT, cut), read=min(READ_TIMEOUT, cut),
                                write=min(WRITE_TIMEOUT, cut), pool=min(POOL_TIMEOUT, cut))
        try:
            return self.client.post(url, content=content, headers=headers, timeout=timeout,
                                    extensions={"trace": self._trace})
        except httpx.HTTPError:
            if self.fired:
                raise BudgetExhausted(f"delivery budget of {self.budget:g} s exhausted") from None
            raise

    def close(self) -> None:
        self._timer.cancel()
        self.client.close()

    def __enter__(self) -> DeliveryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe(exc: Exception, host: str) -> str:
    """A one-line reason for a request that got no HTTP answer."""
    if isinstance(exc, BudgetExhausted):
        return str(exc)
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout | httpx.PoolTimeout):
        return "read timed out" if isinstance(exc, httpx.ReadTimeout) else "write timed out"
    if isinstance(exc, httpx.ProxyError):
        return f"proxy: {exc}"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        if "refused" in text.lower():
            return "connection refused"
        if "name or service" in text.lower() or "nodename" in text.lower() or "resolution" in text.lower():
            return f"cannot resolve {host}: {text}"
        if "certificate" in text.lower() or "ssl" in text.lower():
            return f"TLS: {text}"
        return text or type(exc).__name__
    if isinstance(exc, httpx.RemoteProtocolError):
        text = str(exc)
        if "without sending" in text or "disconnected" in text.lower():
            return "connection closed without an answer"
        return f"malformed response: {text}"
    return str(exc) or type(exc).__name__
