"""What both fakes share: an HTTP server on 127.0.0.1 and a free port, served from a thread."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

__all__ = ["LoopbackServer"]


class LoopbackServer:
    """Serve ``self._handler_class()`` for the length of a ``with`` block; subclasses call ``_bind()``."""

    def _handler_class(self):
        raise TypeError(f"{type(self).__name__} must define _handler_class()")

    def _bind(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
