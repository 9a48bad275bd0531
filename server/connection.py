"""uvicorn's h11 protocol with a header timeout: a connection that does not deliver a request's headers in time
is closed.

uvicorn times out idle kept-alive connections (``timeout_keep_alive``) but arms that timer only after a response,
and any byte received disarms it: a connection that sends nothing, or sends a header a byte at a time, stays open
for good. Here every connection must complete a request's headers within ``header_timeout_s`` of opening and of
each response it got. The rest is uvicorn's own: ``h11_max_incomplete_event_size`` bounds the headers' size,
``limit_concurrency`` the connections and requests, ``timeout_keep_alive`` the idle time between requests.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol
from vqnat_server.settings import Settings

logger = logging.getLogger(__name__)


class HeaderTimeoutProtocol(H11Protocol):
    """:class:`H11Protocol` that closes a connection whose request headers take over ``header_timeout_s``."""

    def __init__(self, *args, header_timeout_s: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._disarm_once_headers_are_in()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's headers are due in time as well
            self._disarm_once_headers_are_in()  # (unless pipelined ones were in already)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # ------------------------------------------------------------------ timer
    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _disarm_once_headers_are_in(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:  # a request is being served
            self._disarm()

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            logger.info("closing a connection whose request headers took over %g s", self.header_timeout_s)
            self.transport.close()


def protocol_with_header_timeout(header_timeout_s: float) -> functools.partial[HeaderTimeoutProtocol]:
    """The protocol factory to give uvicorn as ``http=`` (picklable, for worker processes)."""
    return functools.partial(HeaderTimeoutProtocol, header_timeout_s=header_timeout_s)


def uvicorn_options(settings: Settings) -> dict[str, object]:
    """uvicorn's keyword arguments for ``settings``: address, logging and the connection limits."""
    return dict(host=settings.host, port=settings.port, log_level=settings.log_level,
                http=protocol_with_header_timeout(settings.header_timeout_s),
                h11_max_incomplete_event_size=settings.max_header_bytes,
                limit_concurrency=settings.max_connections, timeout_keep_alive=settings.keep_alive_timeout_s,
                timeout_graceful_shutdown=settings.shutdown_timeout_s)
