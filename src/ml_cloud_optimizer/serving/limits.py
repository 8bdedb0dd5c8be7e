"""Request bodies bounded in size, time and memory before anything parses them.

``RequestGuard`` is the outermost of this server's ASGI middlewares, so it sees every request
before routing and before any body byte is read (uvicorn buffers at most 64 KiB of a body
until the application asks for it: ``uvicorn/protocols/http/flow_control.py``):

* a ``Content-Length`` above the limit is answered 413 at once, unread; a chunked body is
  counted as it streams and answered 413 the moment it passes the limit;
* the whole body must arrive within ``body_timeout_s`` of its headers, or the request is
  answered 408 and its connection closed: without this a client that sent half a body held a
  connection, a task and its buffered bytes for ever (uvicorn has no read timeout);
* the bodies being served at once share one byte budget (``BodyBudget``). Parsing a JSON body
  costs about five times its size in memory (measured: +236 MB peak RSS for one 46 MB v2
  body), so it is the sum of bodies in flight, not the count of requests, that decides whether
  a pod's memory holds. A body that does not fit is answered 503 with ``Retry-After`` before it
  is read.

Every refusal has the ``{"error": ...}`` JSON body of KServe's own errors.
"""

from __future__ import annotations

import asyncio

import orjson

__all__ = ["BodyBudget", "RequestGuard", "send_json_error"]


async def send_json_error(send, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Answer ``status`` with ``{"error": message}`` on the ASGI ``send``."""
    body = orjson.dumps({"error": message})
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class BodyBudget:
    """Bytes of request bodies admitted and not answered yet, at most ``limit``.

    Used from the event loop only, so the count needs no lock.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


class _Refused(Exception):
    """Raised from ``receive`` into the application; the guard answers in its place."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


_CLOSE = ((b"connection", b"close"),)


class RequestGuard:
    """ASGI middleware: body size limit (413), body deadline (408), body byte budget (503).

    Args:
        app: the ASGI application.
        max_body_bytes: larger bodies are refused.
        body_timeout_s: seconds from the headers to the last body byte.
        budget: the byte budget shared by the requests in flight.
        retry_after_s: the ``Retry-After`` of a 503.
    """

    def __init__(self, app, *, max_body_bytes: int, body_timeout_s: float, budget: BodyBudget, retry_after_s: int = 1):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.budget = budget
        self.retry_after = ((b"retry-after", str(retry_after_s).encode()),)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope["headers"] if k.lower() in (b"content-length", b"transfer-encoding")}
        length_header = headers.get(b"content-length")
        if length_header is not None and not length_header.strip().isdigit():
            await send_json_error(send, 400, "content-length: not a length", _CLOSE)
            return
        length = int(length_header) if length_header is not None else None
        if length is not None and length > self.max_body_bytes:
            # Closed after the answer: the body that follows is not worth reading.
            await send_json_error(send, 413, self._too_large(), _CLOSE)
            return
        if length and not self.budget.take(length):
            await send_json_error(send, 503, self._busy(), self.retry_after + _CLOSE)
            return
        await _GuardedRequest(self, scope, receive, send, held=length or 0).run()

    def _too_large(self) -> str:
        return f"body: larger than the limit of {self.max_body_bytes} bytes"

    def _busy(self) -> str:
        return "body: the server is reading as many request bytes as it can hold; retry shortly"


class _GuardedRequest:
    """One request under the guard: its ``receive`` counted and timed, its answer replaced when refused."""

    def __init__(self, guard: RequestGuard, scope, receive, send, held: int):
        self.guard, self.scope, self.receive, self.send = guard, scope, receive, send
        self.held = held
        self.chunked = held == 0
        self.received = 0
        self.complete = False
        self.refused: _Refused | None = None
        self.started = False
        loop = asyncio.get_running_loop()
        self.loop, self.deadline = loop, loop.time() + guard.body_timeout_s

    async def run(self) -> None:
        try:
            await self.guard.app(self.scope, self.guarded_receive, self.guarded_send)
        except Exception:
            # The application may re-raise the refusal as it is or wrapped; either way it is answered here.
            if self.refused is None or self.started:
                raise
        finally:
            self.guard.budget.give(self.held)
        if self.refused is not None and not self.started:
            self.started = True
            await send_json_error(self.send, self.refused.status, self.refused.message, self.refused.headers)

    async def guarded_receive(self):
        if self.complete or self.refused is not None:
            return await self.receive()
        try:
            # Not asyncio.wait_for: it wraps each receive in a task, which took the 1-row p99 to 500 ms.
            async with asyncio.timeout_at(self.deadline):
                message = await self.receive()
        except TimeoutError:
            raise self._refuse(408, f"body: not received within {self.guard.body_timeout_s:g} s", _CLOSE) from None
        if message["type"] != "http.request":
            self.complete = True
            return message
        size = len(message.get("body", b""))
        self.received += size
        if self.received > self.guard.max_body_bytes:
            raise self._refuse(413, self.guard._too_large(), _CLOSE)
        if self.chunked:
            if not self.guard.budget.take(size):
                raise self._refuse(503, self.guard._busy(), self.guard.retry_after + _CLOSE)
            self.held += size
        self.complete = not message.get("more_body", False)
        return message

    async def guarded_send(self, message) -> None:
        if self.refused is not None and not self.started:
            return  # the application's answer to a refused body; the guard sends its own
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)

    def _refuse(self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...]) -> _Refused:
        self.refused = _Refused(status, message, headers)
        return self.refused
