"""uvicorn's httptools protocol with a bound on a request's head (request line + headers).

uvicorn bounds the head only for its h11 protocol (`h11_max_incomplete_event_size`); with
httptools (what `uvicorn[standard]` picks) a 200 MB header was read whole into memory. This
protocol counts the bytes fed to the parser until the head is complete and answers
431 past `max_header_bytes` (setting), closing the connection.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from copines.config import get_settings

HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: 40\r\nconnection: close\r\n\r\n"
    b"En-tetes de la requete trop volumineux.\n"
)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol refusing a head larger than the `max_header_bytes` setting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_head = get_settings().max_header_bytes
        self._head = 0
        self._in_head = True

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head = True, 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head += len(data)
        super().data_received(data)
        if self._in_head and self._head > self._max_head and not self.transport.is_closing():
            self.logger.warning("request head over %d bytes refused", self._max_head)
            self.transport.write(HEAD_TOO_LARGE)
            self.transport.close()
