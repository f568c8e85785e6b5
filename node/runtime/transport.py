"""Streams between nodes: real TCP with optional TLS, behind one small interface.

A transport only gives byte streams; ``peer.py`` runs the handshake on top.
``node.sim.SimTransport`` implements the same :class:`Transport` protocol over
the simulated network, so everything above this module runs on either.

Errors are the ones trio and the socket layer use, all ``OSError``: a refused
connection is ``ConnectionRefusedError``, a connect that takes longer than
``connect_timeout_s`` is ``TimeoutError`` naming the address, a failed TLS
handshake is the ``ssl.SSLError`` subclass that says why, with the address in
its message. A caller needs one ``except OSError`` around ``connect``.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import trio

from node.config import NodeConfig, TlsConfig, format_address, parse_address
from node.errors import ConfigError, ListenError

DEFAULT_CONNECT_TIMEOUT_S = 5.0

#: How a TcpTransport opens a TCP stream: ``trio.open_tcp_stream`` unless a test
#: injects something slower or failing.
OpenStream = Callable[[str, int], Awaitable[trio.abc.Stream]]


_LISTEN_CAUSES = {
    errno.EADDRINUSE: "address already in use",
    errno.EADDRNOTAVAIL: "not an address of this host",
    errno.EACCES: "permission denied",
}


def listen_error(what: str, address: str, exc: OSError) -> ListenError:
    """One line naming the address and the cause, for any failure to listen."""
    if isinstance(exc, socket.gaierror):
        cause = f"host cannot be resolved ({exc.strerror or exc})"
    else:
        cause = _LISTEN_CAUSES.get(exc.errno or 0) or exc.strerror or str(exc)
    return ListenError(f"cannot listen for {what} on {address}: {cause}")


class Transport(Protocol):
    """What the runtime needs from a network: listen for and open streams."""

    async def listen(self, address: str) -> tuple[trio.abc.Listener[trio.abc.Stream], str]:
        """Listen on ``"host:port"``; return the listener and the bound ``"host:port"``.

        Port 0 picks a free port; the returned address has the real one.
        """
        ...

    async def connect(self, address: str) -> trio.abc.Stream:
        """Open a stream to ``"host:port"``; ``OSError`` if that fails."""
        ...


class TcpTransport:
    """The :class:`Transport` of real TCP, with TLS when contexts are given.

    ``listen("*:port")`` listens on every interface and address family (one
    listener per family, accepted from as one). ``listen(...)`` with port 0 and
    a host that resolves to several addresses keeps only the listeners that got
    the first one's port, since the node advertises a single port. Accepted and
    connected sockets have ``TCP_NODELAY`` (trio's ``SocketStream`` sets it):
    the writer batches on its own, and Nagle would only add latency to
    heartbeats and acks.

    With ``server_ssl``, accepted streams are ``trio.SSLStream``\\ s whose
    handshake runs on their first read or write, inside the peer's handshake
    timeout. With ``client_ssl``, ``connect`` completes the TLS handshake before
    returning, within ``connect_timeout_s``, so a bad certificate fails there.
    Under TLS 1.3 a server that rejects the client's certificate says so only
    after the client's handshake is done: that shows as ``trio.BrokenResourceError``
    on the client's first read.

    ``open_stream`` replaces ``trio.open_tcp_stream`` (tests use it to be slow).
    """

    def __init__(
        self,
        *,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        open_stream: OpenStream | None = None,
    ) -> None:
        if not connect_timeout_s > 0:
            raise ConfigError(f"connect_timeout_s must be > 0, got {connect_timeout_s!r}")
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.server_hostname = server_hostname
        self.connect_timeout_s = connect_timeout_s
        self._open_stream: OpenStream = open_stream or _open_tcp_stream

    async def listen(self, address: str) -> tuple[trio.abc.Listener[trio.abc.Stream], str]:
        """Listen on ``address``; return the listener and the bound ``"host:port"``."""
        host, port = parse_address(address)
        try:
            sockets = await trio.open_tcp_listeners(port, host=None if host == "*" else host)
        except OSError as exc:
            raise listen_error("peers", address, exc) from None
        bound_host, bound_port = sockets[0].socket.getsockname()[:2]
        keep: list[trio.SocketListener] = []
        for listener in sockets:
            if listener.socket.getsockname()[1] == bound_port:
                keep.append(listener)
            else:
                await listener.aclose()
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = []
        for listener in keep:
            if self.server_ssl is None:
                listeners.append(listener)
            else:
                listeners.append(
                    trio.SSLListener(listener, self.server_ssl, https_compatible=False)
                )
        one = listeners[0] if len(listeners) == 1 else MultiListener(listeners)
        return one, format_address(bound_host, bound_port)

    async def connect(self, address: str) -> trio.abc.Stream:
        """Open a stream to ``address`` (and finish the TLS handshake if TLS is on).

        ``TimeoutError`` after ``connect_timeout_s``, ``ConnectionRefusedError`` if
        nobody listens, ``ssl.SSLError`` if the TLS handshake fails; all OSError.
        """
        host, port = parse_address(address)
        try:
            with trio.fail_after(self.connect_timeout_s):
                stream = await self._open_stream(host, port)
                if self.client_ssl is None:
                    return stream
                return await self._tls_handshake(stream, address)
        except trio.TooSlowError:
            raise TimeoutError(
                errno.ETIMEDOUT,
                f"connect to {address} timed out after {self.connect_timeout_s:g} s",
            ) from None
        except OSError as exc:
            if _all_refused(exc):
                raise ConnectionRefusedError(
                    errno.ECONNREFUSED, f"connection to {address} refused"
                ) from exc
            raise

    async def _tls_handshake(
        self, stream: trio.abc.Stream, address: str
    ) -> trio.SSLStream[trio.abc.Stream]:
        assert self.client_ssl is not None
        tls = trio.SSLStream(
            stream, self.client_ssl, server_hostname=self.server_hostname, https_compatible=False
        )
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError as exc:
            await trio.aclose_forcefully(tls)
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError):
                # Keep the precise class (e.g. SSLCertVerificationError) and say with whom.
                raise type(cause)(
                    cause.errno, f"TLS handshake with {address} failed: {cause}"
                ) from exc
            raise ConnectionResetError(
                errno.ECONNRESET, f"{address} closed the connection during the TLS handshake"
            ) from exc
        except BaseException:
            await trio.aclose_forcefully(tls)
            raise
        return tls


async def _open_tcp_stream(host: str, port: int) -> trio.abc.Stream:
    return await trio.open_tcp_stream(host, port)


def _all_refused(exc: OSError) -> bool:
    # trio reports a failed connect as a plain OSError("all attempts to connect
    # ... failed") caused by a group of the per-address errors; when every one of
    # them was a refusal, say ConnectionRefusedError as the simulated network does.
    if isinstance(exc, ConnectionRefusedError):
        return False  # already precise
    group = exc.__cause__
    if not isinstance(group, ExceptionGroup):
        return False
    errors = group.exceptions
    return bool(errors) and all(isinstance(e, ConnectionRefusedError) for e in errors)


class MultiListener(trio.abc.Listener[trio.abc.Stream]):
    """Several listeners accepted from as one (e.g. IPv4 and IPv6 of ``*:port``).

    ``accept`` waits on all of them. A trio socket accept either returns a
    connection or is cancelled with none taken, so when two arrive at once the
    spare is queued for the next ``accept``, never lost.
    """

    def __init__(self, listeners: Sequence[trio.abc.Listener[trio.abc.Stream]]) -> None:
        if not listeners:
            raise ValueError("MultiListener needs at least one listener")
        self.listeners = tuple(listeners)
        self._ready: deque[trio.abc.Stream] = deque()

    async def accept(self) -> trio.abc.Stream:
        if self._ready:
            await trio.lowlevel.checkpoint()
            return self._ready.popleft()
        errors: list[Exception] = []
        async with trio.open_nursery() as nursery:
            for listener in self.listeners:
                nursery.start_soon(self._accept_one, listener, nursery.cancel_scope, errors)
        if self._ready:
            return self._ready.popleft()
        raise errors[0]

    async def _accept_one(
        self,
        listener: trio.abc.Listener[trio.abc.Stream],
        scope: trio.CancelScope,
        errors: list[Exception],
    ) -> None:
        try:
            stream = await listener.accept()
        except Exception as exc:  # reported by accept() unless another listener succeeds
            errors.append(exc)
        else:
            self._ready.append(stream)
        scope.cancel()

    async def aclose(self) -> None:
        for stream in self._ready:
            await trio.aclose_forcefully(stream)
        self._ready.clear()
        for listener in self.listeners:
            await listener.aclose()


def make_ssl_contexts(tls: TlsConfig) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """``(server, client)`` ssl contexts for ``tls``; ConfigError naming a bad file.

    Both sides need TLS 1.2 or later and present ``tls.cert``. The server
    verifies client certificates against ``tls.ca`` only with
    ``require_client_cert`` (and then only against that CA, never the system
    store). The client always verifies the server's chain against ``tls.ca``
    (system store if None) and checks its host name only when
    ``tls.server_hostname`` is set: nodes are dialled by IP, and the
    certificates are the cluster's own, issued by its CA. Without a server
    name, any certificate of that CA is accepted; the cookie still has to match.
    """
    for field, path in (("tls.cert", tls.cert), ("tls.key", tls.key), ("tls.ca", tls.ca)):
        if path is not None:
            _check_readable(field, path)

    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname on
    for context in (server, client):
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(tls.cert, tls.key, password=_no_password)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"tls.cert {tls.cert!r} / tls.key {tls.key!r}: cannot load the "
                f"certificate and key: {exc}"
            ) from exc
    if tls.ca is not None:
        for context in (server, client):
            try:
                context.load_verify_locations(cafile=tls.ca)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(f"tls.ca {tls.ca!r}: cannot load the CA: {exc}") from exc
    else:
        client.load_default_certs(ssl.Purpose.SERVER_AUTH)
    server.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_NONE
    client.check_hostname = tls.server_hostname is not None
    return server, client


def _no_password() -> bytes:
    # Without this OpenSSL would prompt on the terminal for an encrypted key's
    # passphrase, which hangs a daemon.
    raise ConfigError("tls.key is encrypted; a node needs an unencrypted key file")


def _check_readable(field: str, path: str) -> None:
    if not os.path.isfile(path):
        raise ConfigError(f"{field} {path!r}: no such file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{field} {path!r}: cannot read: {exc.strerror}") from exc


def make_transport(config: NodeConfig) -> TcpTransport:
    """The TCP transport ``config`` asks for (TLS when ``config.tls`` is set)."""
    if config.tls is None:
        return TcpTransport(connect_timeout_s=config.connect_timeout_s)
    server, client = make_ssl_contexts(config.tls)
    return TcpTransport(
        server_ssl=server,
        client_ssl=client,
        server_hostname=config.tls.server_hostname,
        connect_timeout_s=config.connect_timeout_s,
    )
