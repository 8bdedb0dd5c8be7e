"""uvicorn's HTTP protocol with a deadline on request headers.

uvicorn times out a connection only between requests (``timeout_keep_alive``, armed when a
response completes: ``uvicorn/protocols/http/httptools_impl.py``). A connection that sends
nothing after it opens, or half its request headers, is held for ever, and so is its slot in
the kernel's and the proxy's connection tables. This protocol closes such a connection
``header_timeout_s`` after it opens or after a request's first byte, unless the headers are
complete by then. Bodies have their own deadline (``limits.RequestGuard``).

It is uvicorn's own httptools protocol, handed to ``uvicorn.Config(http=...)``, which takes a
protocol class as well as a name; the server uses httptools already (uvicorn's ``auto``).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["with_header_timeout"]


class _HeaderDeadlineProtocol(HttpToolsProtocol):
    header_timeout_s = 30.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def with_header_timeout(seconds: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing connections whose request headers take over ``seconds``."""
    return type("HeaderDeadlineProtocol", (_HeaderDeadlineProtocol,), {"header_timeout_s": float(seconds)})
