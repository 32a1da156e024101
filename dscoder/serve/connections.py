"""Connections that cannot hold the server: a deadline for each request's head and body, a cap
on open connections below the open-file limit, and that limit raised as far as it goes.

uvicorn times out idle keep-alive connections only: a client that sends its headers a byte at
a time (slowloris), or stops half-way through a body, holds its connection and descriptor for
ever, and a thousand such clients exhaust the process's descriptors, after which nothing, not
even /health, is accepted (and asyncio logs a traceback per refused accept).  uvicorn has no
option for either, and its maintained alternatives (hypercorn, granian) bring a server of
their own to adopt and test; so this module subclasses uvicorn's h11 protocol, whose state
machine says exactly what is awaited, and adds:

- a head deadline (`--header-timeout`), from connecting or from the previous response until
  the request's head is complete; past it the connection is closed (with 408 if part of a head
  had come);
- a body deadline (`--body-timeout`), from the head until the body is complete; past it the
  client gets 408 and the connection is closed;
- a connection cap (`--max-connections`, by default the open-file limit less a reserve), kept
  where connections are accepted: a new connection past it closes the connection that has
  waited longest for a request head (a trickler, or a kept-alive one nobody uses), never one
  whose request is being served, so the descriptors never run out and a /health probe gets in.

The h11 protocol is used whether or not httptools is installed: serving is bound by the
model, not by HTTP parsing.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
from collections import OrderedDict

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from dscoder.serve.limits import HttpLimits

log = logging.getLogger(__name__)

_TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_FULL_503 = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one, as far as the kernel lets; the soft limit in force."""
    infinity = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (hard, 1 << 20):  # the kernel caps descriptors (fs.nr_open) below an unlimited hard limit
        if target == infinity or (soft != infinity and target <= soft) or (hard != infinity and target > hard):
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            continue
    return soft if soft != infinity else 1 << 20


class ConnectionGuard:
    """The open connections of one server, those waiting for a request head in the order they
    began to; `protocol` and `listen` make the protocol class and the listening socket that use it."""

    def __init__(self, limits: HttpLimits, max_connections: int):
        self.limits, self.max_connections = limits, max_connections
        self.open: set[GuardedH11Protocol] = set()
        self.idle: OrderedDict[GuardedH11Protocol, None] = OrderedDict()
        self.accepted = 0  # sockets accepted whose protocol has not started yet
        self.protocol: type[GuardedH11Protocol] = type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": self})

    def listen(self, config) -> "GuardedListener":
        """uvicorn's listening socket for `config` (host, port), accepting through this guard."""
        sock = config.bind_socket()
        listener = GuardedListener(sock.family, sock.type, sock.proto, fileno=sock.detach())
        listener.guard = self
        return listener

    def has_room(self) -> bool:
        return len(self.open) + self.accepted < self.max_connections

    def make_room(self) -> bool:
        """Close the connection that has waited longest for a request head; False when every one is busy."""
        if not self.idle:
            return False
        victim, _ = self.idle.popitem(last=False)
        log.warning("closed the longest-idle connection to make room for a new one (%d open, --max-connections)",
                    self.max_connections)
        victim.transport.close()
        self.forget(victim)
        return True

    def opened(self, conn: "GuardedH11Protocol") -> None:
        self.accepted = max(0, self.accepted - 1)
        self.open.add(conn)

    def waiting_for_head(self, conn: "GuardedH11Protocol", waiting: bool) -> None:
        if waiting:
            self.idle.setdefault(conn)
        else:
            self.idle.pop(conn, None)

    def forget(self, conn: "GuardedH11Protocol") -> None:
        self.open.discard(conn)
        self.idle.pop(conn, None)


class GuardedListener(socket.socket):
    """The listening socket: `accept` takes a connection only while the guard has room.

    asyncio accepts up to `backlog` (2048) connections per tick before any of them reaches its
    protocol, so a cap checked when a connection starts comes too late: the descriptors run out
    first, and asyncio then logs the failure once per remaining backlog slot.  Here, at the cap,
    the longest-idle connection is closed and accepting stops for this tick (its descriptor is
    freed before the next); with no idle connection, the new one is answered 503 and closed."""

    guard: ConnectionGuard

    def accept(self):
        guard = self.guard
        if not guard.has_room():
            if not guard.make_room():
                conn, _ = super().accept()
                try:
                    conn.setblocking(False)
                    conn.send(_FULL_503)
                except OSError:
                    pass
                conn.close()
                log.warning("refused a connection: all %d connections are serving requests (--max-connections)",
                            guard.max_connections)
            raise BlockingIOError  # asyncio's sign to stop accepting until the next tick
        conn, addr = super().accept()
        guard.accepted += 1
        return conn, addr


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with head and body deadlines and the connection cap (see the module)."""

    guard: ConnectionGuard  # set on the subclass `guarded_protocol` makes

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._timer: asyncio.TimerHandle | None = None
        self._awaiting: str | None = None  # "head", "body" or None (a request is being served)
        super().connection_made(transport)
        self.guard.opened(self)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.forget(self)
        super().connection_lost(exc)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _watch(self) -> None:
        """(Re)arm the deadline for what the connection now awaits from the client."""
        if self.transport.is_closing():
            self._disarm()
            self.guard.forget(self)
            return
        state = self.conn.their_state
        awaiting = "head" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        self.guard.waiting_for_head(self, awaiting == "head")
        if awaiting == self._awaiting:
            return
        self._disarm()
        self._awaiting = awaiting
        if awaiting is not None:
            limits = self.guard.limits
            timeout = limits.header_timeout if awaiting == "head" else limits.body_timeout
            self._timer = self.loop.call_later(timeout, self._expired, awaiting)

    def _expired(self, awaiting: str) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if awaiting == "head":
            if self.conn.trailing_data[0]:  # part of a head came: say why it is closed
                self.transport.write(_TIMEOUT_408)
            log.warning("closed a connection whose request head was not complete within %g s (--header-timeout)",
                        self.guard.limits.header_timeout)
        else:
            if self.cycle is not None and not self.cycle.response_started:  # the app is still reading it
                self.transport.write(_TIMEOUT_408)
            log.warning("closed a connection whose request body was not complete within %g s (--body-timeout)",
                        self.guard.limits.body_timeout)
        self.transport.close()
