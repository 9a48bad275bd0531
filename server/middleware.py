"""Pure-ASGI middleware of the service, outermost first: metrics, API key, body limits, cancellation on
disconnect. Each sees the raw ASGI messages, so each acts before FastAPI reads or parses anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Collection

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from vqnat_server.metrics import Metrics

ErrorFactory = Callable[..., JSONResponse]  # (status, code, message, headers=...) -> response
# A refused request's unread body is read and dropped, up to this many bytes, before the error is sent: closing a
# socket with unread data makes the kernel send a reset, and the client may then lose the error response.
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
BODY_METHODS = ("POST", "PUT", "PATCH")


async def drain_body(receive: Receive, limit: int = DRAIN_LIMIT_BYTES) -> bool:
    """Read and drop the rest of a request body, up to ``limit`` bytes; whether it was read to its end."""
    seen = 0
    while seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return False  # the client went away
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value
    return b""


async def refuse(scope: Scope, receive: Receive, send: Send, response: JSONResponse, timeout_s: float) -> None:
    """Send an error for a request whose body is still unread: drain the body first (within ``timeout_s`` and
    :data:`DRAIN_LIMIT_BYTES`) so the error reaches the client, then close the connection."""
    response.headers["connection"] = "close"
    waits_for_continue = _header(scope, b"expect").lower() == b"100-continue"  # the body never comes
    declared = _header(scope, b"content-length")
    small_enough = not declared.isdigit() or int(declared) <= DRAIN_LIMIT_BYTES
    if scope.get("method") in BODY_METHODS and not waits_for_continue and small_enough:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await drain_body(receive)
    await response(scope, receive, send)


class MetricsMiddleware:
    """Counts every HTTP response sent by endpoint and status and times it; a request whose client went away
    before any response counts as a disconnect, not as a status it never got."""

    def __init__(self, app: ASGIApp, metrics: Metrics, endpoints: Collection[str]) -> None:
        self.app, self.metrics, self.endpoints = app, metrics, endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: int | None = None

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path = scope.get("path", "")
        endpoint = path if path in self.endpoints else "other"
        try:
            await self.app(scope, receive, send_and_record)
        except BaseException:
            if status is None:
                status = 500  # uvicorn answers an exception that escapes the app with a 500
            raise
        finally:
            if status is None:
                self.metrics.observe_disconnect(endpoint, scope.get("method", ""))
            else:
                self.metrics.observe_request(endpoint, scope.get("method", ""), status, time.perf_counter() - start)


class ApiKeyMiddleware:
    """With a key set, requests to the protected paths need it in ``header`` (checked in constant time), before
    their body is read: a request without the key gets the 401 whatever its body."""

    def __init__(self, app: ASGIApp, key: str | None, header: str, protected: Callable[[str], bool],
                 error: ErrorFactory, body_timeout_s: float) -> None:
        self.app, self.protected, self.error, self.body_timeout_s = app, protected, error, body_timeout_s
        self.key = key.encode("ascii") if key is not None else None
        self.header, self.header_name = header.lower().encode("ascii"), header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is None or scope["type"] != "http" or not self.protected(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        given = _header(scope, self.header)
        if not secrets.compare_digest(given, self.key):
            response = self.error(401, "unauthorized", f"missing or wrong {self.header_name} header")
            await refuse(scope, receive, send, response, self.body_timeout_s)
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Reads a request body in full before the app sees it: over ``max_bytes`` (declared or counted) is a 413,
    a body not in within ``timeout_s`` of the headers a 408. The body (small by construction) is then replayed
    to the app in one message."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float, error: ErrorFactory) -> None:
        self.app, self.max_bytes, self.timeout_s, self.error = app, max_bytes, timeout_s, error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await refuse(scope, receive, send, self._too_large(), self.timeout_s)
            return
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":  # the client went away
                        return
                    chunks.append(message.get("body", b""))
                    size += len(chunks[-1])
                    if size > self.max_bytes:
                        break
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            response = self.error(408, "body_timeout", f"the request body did not arrive within "
                                  f"{self.timeout_s:g} s (body_timeout_s)", headers={"connection": "close"})
            await response(scope, receive, send)
            return
        if size > self.max_bytes:
            remaining = max(0.0, self.timeout_s - (time.monotonic() - started))
            await refuse(scope, receive, send, self._too_large(), remaining)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> JSONResponse:
        return self.error(413, "body_too_large", f"request body over {self.max_bytes} bytes (max_body_bytes)")


class CancelOnDisconnect:
    """Cancels a request's handler when its client goes away before the response: the work it queued is dropped
    and a model batch that only it still waited on stops (see :mod:`vqnat_server.batching`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        body_done, gone, responded = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def app_receive() -> Message:
            if body_done.is_set():  # only a disconnect comes after the body, and the watcher takes it
                await gone.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False):
                body_done.set()
            return message

        async def app_send(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                responded.set()
            await send(message)

        async def watch() -> None:
            await body_done.wait()
            message = await receive()
            if message["type"] == "http.disconnect" and not responded.is_set():
                gone.set()

        handler = asyncio.ensure_future(self.app(scope, app_receive, app_send))
        watcher = asyncio.ensure_future(watch())
        gone_wait = asyncio.ensure_future(gone.wait())
        try:
            await asyncio.wait({handler, gone_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not handler.done():
                handler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await handler
                return
            await handler
        finally:
            for task in (watcher, gone_wait, handler):
                task.cancel()
            await asyncio.gather(watcher, gone_wait, return_exceptions=True)
