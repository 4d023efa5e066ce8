"""uvicorn's HTTP protocols with a deadline on reading each request, headers and body.

The deadline covers only the time the server waits on the client: it starts with the
connection or with a request's first byte and is cancelled once the request is read in
full (a request that then waits for a thread or a slow handler is never cut off); it does
not run while the server itself holds the body back (uvicorn pauses reading past 64 KiB
until the app reads on; the client then gets a fresh ``read_timeout`` for the rest).
An expired deadline, and uvicorn's keep-alive timeout, are judged only after the event
loop's next poll of its sockets, so bytes the client sent in time but a busy loop had not
yet read count as sent (without this a busy server closed connections whose request was
already in the socket, and the client saw a reset, as the reliability campaign found). A
connection cut off with 408 is closed lingering (as nginx does): the server sends the 408 and
its FIN, then reads and discards what the client still sends for up to :data:`LINGER_S` s,
because closing a socket with unread bytes in it makes the kernel answer with a reset, which
can destroy the 408 in the client's buffer before the client reads it.

Two parsers, one deadline (:class:`ReadDeadline`): :class:`TimedHttpToolsProtocol` on uvicorn's
httptools (llhttp, C) protocol, what ``galclip serve`` uses when httptools is installed (it is a
dependency: ~0.2 ms less server CPU per small request than h11 on a 2-core box,
``benchmarks/explore/server_cost.py``), and :class:`TimedH11Protocol` on the pure-Python h11 one.

The classes are module-level (picklable), so ``galclip serve --workers N`` can hand them to
uvicorn's worker processes; :func:`timed_protocol` binds ``read_timeout``.
"""
from __future__ import annotations

import socket
from typing import Any

import h11
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol

from galclip.serve.limits import READ_TIMEOUT_S

LINGER_S = 2.0   # how long a connection cut off with 408 drains the client before closing


class Flow(FlowControl):
    """uvicorn's read flow control, telling the protocol when it holds a body back."""

    def __init__(self, transport, protocol) -> None:
        super().__init__(transport)
        self.protocol = protocol

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.protocol._cancel_read_deadline()    # the server's wait, not the client's
        super().pause_reading()

    def resume_reading(self) -> None:
        was = self.read_paused
        super().resume_reading()
        if was:
            self.protocol._reading_resumed()


def _no_delay(transport) -> None:
    """TCP_NODELAY on the connection. asyncio sets it only on sockets created with
    ``proto=IPPROTO_TCP``; the listening socket uvicorn binds for ``--workers`` has proto 0, and
    without it every small response waited ~40 ms for the client's delayed ACK (Nagle)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class ReadDeadline:
    """The read deadline, mixed into one of uvicorn's protocols (first base): a client that has
    not sent its whole request ``read_timeout`` s after its first byte (or after connecting) gets
    408 and the connection is closed. The protocol class supplies :meth:`_idle`."""

    _read_deadline: Any = None
    _got_bytes = False
    _linger: Any = None                            # the close timer once cut off with 408

    def __init__(self, *args: Any, read_timeout: float = READ_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = float(read_timeout)

    def _idle(self) -> bool:
        """Between requests, nothing of the next one received."""
        raise NotImplementedError

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.flow = Flow(transport, self)
        _no_delay(transport)
        self._arm_read_deadline()

    def _reading_resumed(self) -> None:
        c = self.cycle                             # a body held back: the client gets a
        if c is not None and not c.response_complete and c.more_body:   # fresh deadline
            self._arm_read_deadline()

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:
            return                                 # cut off with 408: drained, not parsed
        self._got_bytes = True
        if self._read_deadline is None:
            self._arm_read_deadline()
        super().data_received(data)
        if not self.transport.is_closing():        # e.g. a 400 for a malformed request
            self._after_data()

    def _after_data(self) -> None:
        """After the parser took a chunk: the deadline ends once the request is read."""
        c = self.cycle
        if c is not None and not c.response_complete and not c.more_body:
            self._cancel_read_deadline()           # read in full: the app's time now
        elif self._idle():                         # e.g. the end of a body answered early
            self._cancel_read_deadline()
            if self.timeout_keep_alive_task is None and not self.transport.is_closing():
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc) -> None:
        self._cancel_read_deadline()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self._linger is not None:               # the server stops: no more draining
            self.transport.close()
        else:
            super().shutdown()

    def timeout_keep_alive_handler(self) -> None:
        # after the next poll: a request already in the socket cancels this (data_received)
        self.timeout_keep_alive_task = self.loop.call_later(0, self._keep_alive_expired)

    def _keep_alive_expired(self) -> None:
        self.timeout_keep_alive_task = None
        super().timeout_keep_alive_handler()

    def _arm_read_deadline(self) -> None:
        self._cancel_read_deadline()
        self._read_deadline = self.loop.call_later(self.read_timeout, self._read_expired)

    def _cancel_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_expired(self) -> None:
        self._read_deadline = self.loop.call_later(0, self._judge)   # after the next poll

    def _judge(self) -> None:
        self._read_deadline = None
        c = self.cycle
        if self.transport.is_closing() or (c is not None and c.response_started
                                           and not c.response_complete):
            return
        if c is not None and not c.response_complete and not c.more_body:
            return                                 # request read; the app is working
        if c is not None and not c.response_complete and self.flow.read_paused:
            return                                 # the server holds the body back
        if self._idle():
            return                                 # keep-alive: uvicorn's own timeout
        if c is not None and not c.response_complete:
            c.disconnected = True
            c.message_event.set()
        if not self._got_bytes:
            self.transport.close()                 # a silent connection: nothing to say
            return
        msg = f"request not received within {self.read_timeout:g} s\n".encode()
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain"
                             b"\r\nconnection: close\r\ncontent-length: " +
                             str(len(msg)).encode() + b"\r\n\r\n" + msg)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        self.transport.write_eof()                 # the 408, then FIN; the client's EOF or
        self._linger = self.loop.call_later(LINGER_S, self.transport.close)   # this closes


class TimedH11Protocol(ReadDeadline, H11Protocol):
    """uvicorn's h11 protocol with the read deadline."""

    def on_response_complete(self) -> None:
        self._cancel_read_deadline()
        self._got_bytes = False
        super().on_response_complete()             # may start a pipelined request
        if self.conn.trailing_data[0] and self._read_deadline is None and (
                self.cycle.response_complete or self.cycle.more_body):
            self._got_bytes = True
            self._arm_read_deadline()

    def _idle(self) -> bool:
        c = self.cycle
        return (c is not None and c.response_complete and self.conn.their_state is h11.IDLE
                and not self.conn.trailing_data[0])


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed: timed_protocol falls back to h11
    HttpToolsProtocol = None
else:
    class TimedHttpToolsProtocol(ReadDeadline, HttpToolsProtocol):
        """uvicorn's httptools protocol with the read deadline. llhttp parses every byte it is
        fed at once (pipelined requests included); ``_in_message`` is True from a request's
        first byte until its end."""

        _in_message = False

        def on_message_begin(self) -> None:
            self._in_message = True
            super().on_message_begin()

        def on_message_complete(self) -> None:
            self._in_message = False
            super().on_message_complete()

        def on_response_complete(self) -> None:
            self._cancel_read_deadline()
            self._got_bytes = self._in_message
            super().on_response_complete()         # may start a pipelined request
            if self._in_message and self._read_deadline is None:
                self._arm_read_deadline()          # the next request is arriving

        def _idle(self) -> bool:
            c = self.cycle
            return (c is not None and c.response_complete and not self._in_message
                    and not self.pipeline)


def timed_protocol(read_timeout: float = READ_TIMEOUT_S):
    """uvicorn's HTTP protocol with a deadline on reading each request (headers and body): the
    ``http`` argument of ``uvicorn.Config`` (the httptools protocol when httptools is installed,
    else the h11 one, with ``read_timeout`` bound; picklable, so it also serves ``--workers``
    processes)."""
    import functools

    cls = TimedHttpToolsProtocol if HttpToolsProtocol is not None else TimedH11Protocol
    return functools.partial(cls, read_timeout=float(read_timeout))
