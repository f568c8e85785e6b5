"""One connection: framing over a trio stream, and the authenticated handshake.

The handshake is symmetric. Both sides send HELLO (protocol version, cluster,
name, role, nonce, address, incarnation, algedonic UDP port), then each
proves the cookie with an HMAC over both nonces and names (node.core.auth),
then each sends WELCOME. A side that refuses the peer sends BYE with the
reason instead of WELCOME. Whatever goes wrong is a HandshakeError (or
AuthenticationError) saying why; the caller logs, counts and closes.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable

import attrs
import trio

from node.core.auth import (
    TAG_SIZE,
    FrameOpener,
    FrameSealer,
    SessionKeys,
    auth_mac,
    session_keys,
    verify_mac,
)
from node.core.wire import (
    HEADER,
    HEADER_SIZE,
    NONCE_SIZE,
    PROTOCOL_VERSION,
    AnyMessage,
    Auth,
    Bye,
    Decoder,
    Hello,
    Message,
    Welcome,
    decode_payload,
    encode,
)
from node.errors import (
    AuthenticationError,
    ConnectionClosedError,
    ForgedFrameError,
    HandshakeError,
    ProtocolError,
)

log = logging.getLogger("vsm.peer")

RECEIVE_CHUNK = 64 * 1024
# Largest frame accepted before the handshake is done. HELLO, AUTH, WELCOME
# and BYE take a few hundred bytes; the full max_frame (1 MiB) and its msgpack
# limits let a stranger make us build a million objects per frame.
PREAUTH_MAX_FRAME = 4096

# Causes of a failed handshake (HandshakeError.kind, counter names). A side
# that refuses sends BYE with "<kind>: <text>", so both sides count the same.
AUTH_FAILED = "auth_failed"
WRONG_CLUSTER = "wrong_cluster"
VERSION_MISMATCH = "version_mismatch"
DUPLICATE_NAME = "duplicate_name"
OWN_NAME = "own_name"
DUPLICATE_CONNECTION = "duplicate_connection"
SHUTTING_DOWN = "peer_shutting_down"
TIMEOUT = "handshake_timeout"
CONNECTION_LOST = "connection_lost"
BAD_MESSAGE = "bad_handshake_message"
REFUSED = "refused"
_KINDS = frozenset(
    {
        AUTH_FAILED,
        WRONG_CLUSTER,
        VERSION_MISMATCH,
        DUPLICATE_NAME,
        DUPLICATE_CONNECTION,
        SHUTTING_DOWN,
    }
)


def _refused(peer: str, reason: str) -> HandshakeError:
    """The peer sent BYE during the handshake: its reason says why, and of what kind."""
    head = reason.split(":", 1)[0]
    kind = head if head in _KINDS else REFUSED
    return HandshakeError(f"peer {peer!r} refused: {reason}", kind=kind)


# Bad frames tolerated on one connection before we hang up on the peer.
MAX_BAD_FRAMES = 100


class FramedStream:
    """Messages over a byte stream. Stream errors become ConnectionClosedError here,
    the one boundary where they are translated.

    Until ``established`` it accepts frames of at most PREAUTH_MAX_FRAME bytes;
    after, ``max_frame``, and (given session keys, i.e. without TLS) every
    frame both ways carries a tag that ``receive`` checks (ForgedFrameError).
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        max_frame: int,
        max_hops: int,
        on_io: Callable[[], None] | None = None,
    ) -> None:
        self.stream = stream
        # Called after every read that returned data and every write (BusyPoll.poke),
        # on a real connection only: spinning cannot hasten the simulated network.
        real = stream if not isinstance(stream, trio.SSLStream) else stream.transport_stream
        if not isinstance(real, trio.SocketStream):
            on_io = None
        self.on_io: Callable[[], None] = on_io or _nothing
        self.max_frame = max_frame
        self.decoder = Decoder(min(max_frame, PREAUTH_MAX_FRAME), max_hops=max_hops)
        self.bad_frames = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self._send_lock = trio.Lock()
        self._sealer: FrameSealer | None = None
        self._opener: FrameOpener | None = None
        # write_now: only on a plain TCP stream (TLS has its own buffering), where
        # a socket is a file descriptor (POSIX).
        self._socket: trio.socket.SocketType | None = None
        if isinstance(stream, trio.SocketStream) and os.name == "posix":
            self._socket = stream.socket
        self._tail = b""  # sealed bytes write_now could not write: they go first

    @property
    def authenticated_frames(self) -> bool:
        """True once every frame both ways carries a tag."""
        return self._sealer is not None

    def established(self, keys: SessionKeys | None, *, initiator: bool) -> None:
        """The handshake is done: lift the pre-auth frame limit, tag frames if keyed."""
        if keys is not None:
            self._sealer = keys.sealer(initiator=initiator)
            self._opener = keys.opener(initiator=initiator)
        self.decoder.max_frame = self.max_frame + (TAG_SIZE if keys is not None else 0)

    async def send(self, message: Message) -> None:
        await self.send_bytes(encode(message, max_frame=self.max_frame))

    @property
    def can_write_now(self) -> bool:
        """True if write_now would write: a plain TCP socket, still open, and
        nothing else being written or waiting to be."""
        sock = self._socket
        return (
            sock is not None
            and not self._tail
            and not self._send_lock.locked()
            and sock.fileno() != -1
        )

    @property
    def sending(self) -> bool:
        """A send_bytes is in progress (it may wait for the peer to read)."""
        return self._send_lock.locked()

    @property
    def buffered_frames(self) -> bool:
        """Bytes of the last read are still undecoded: ``receive`` may return
        from them without reading (nor letting other tasks run). Otherwise
        its read does: it waits, or checkpoints before reading."""
        return self.decoder.buffered > 0

    @property
    def has_tail(self) -> bool:
        """Bytes from write_now are waiting: a send_bytes (of b"" if need be) must follow."""
        return bool(self._tail)

    def write_now(self, data: bytes) -> None:
        """Write whole frames without waiting (only when ``can_write_now``).

        The publish path uses it when the link is idle, saving the trip through
        the scheduler to the writer task (Nagle's rule: nothing in flight, so
        send at once). What the socket does not take at once is kept and goes
        first in the next send_bytes; so does everything after a failed write,
        where the next send_bytes reports the broken stream.
        """
        sock = self._socket
        assert sock is not None and not self._tail and not self._send_lock.locked()
        if self._sealer is not None:
            data = _seal_frames(self._sealer, data)
        try:
            # The descriptor is non-blocking (trio made it so): this never waits.
            written = os.write(sock.fileno(), data)
        except OSError:  # BlockingIOError included: the writer sends it, or says why not
            written = 0
        self.bytes_out += written
        self.on_io()
        if written < len(data):
            self._tail = data[written:]

    async def send_bytes(self, data: bytes) -> None:
        """Send one or more whole frames (each with its length prefix)."""
        # The lock serialises the writer task and one-off senders (BYE at
        # shutdown): trio refuses two concurrent send_all on one stream. Frames
        # are tagged under it, so tags are numbered in the order they go out.
        async with self._send_lock:
            if self._sealer is not None and data:
                data = _seal_frames(self._sealer, data)
            if self._tail:
                data, self._tail = self._tail + data, b""
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise ConnectionClosedError(f"send failed: {exc or type(exc).__name__}") from exc
        self.bytes_out += len(data)
        self.on_io()

    async def receive(self) -> AnyMessage:
        """The next message. ConnectionClosedError on EOF or a broken stream;
        ProtocolError for bad input (the connection is still framed unless the
        error was a FrameTooLargeError or ForgedFrameError, which leave it unusable)."""
        while True:
            msg = self._next()
            if msg is not None:
                return msg
            data: bytes | bytearray
            if self._socket is not None:
                data = await self._read()
            else:  # TLS: the stream decrypts
                try:
                    await trio.lowlevel.checkpoint()
                    data = await self.stream.receive_some(RECEIVE_CHUNK)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    raise ConnectionClosedError(
                        f"receive failed: {exc or type(exc).__name__}"
                    ) from exc
            if not data:
                raise ConnectionClosedError("peer closed the connection")
            self.bytes_in += len(data)
            self.on_io()
            self.decoder.feed(bytes(data))

    async def _read(self) -> bytes:
        """Read what the plain TCP socket holds (b"" at EOF), as ``write_now``
        writes: straight from the descriptor.

        Data already waiting means a stream: let the others run first (a
        checkpoint per read, as receive_some's). None waiting means an idle
        link: wait until readable, then read and return at once, without
        the extra scheduler round receive_some takes after its read, which a
        reply would otherwise wait for on each hop of a round trip.
        """
        sock = self._socket
        assert sock is not None
        try:
            try:
                data = os.read(sock.fileno(), RECEIVE_CHUNK)
            except BlockingIOError:
                while True:  # until readable for real (a wakeup can be spurious)
                    await trio.lowlevel.wait_readable(sock)
                    try:
                        return os.read(sock.fileno(), RECEIVE_CHUNK)
                    except BlockingIOError:
                        continue
            await trio.lowlevel.checkpoint()
            return data
        except (trio.ClosedResourceError, OSError) as exc:
            raise ConnectionClosedError(f"receive failed: {exc or type(exc).__name__}") from exc

    def _next(self) -> AnyMessage | None:
        if self._opener is None:
            return self.decoder.next_message()
        sealed = self.decoder.next_payload()
        if sealed is None:
            return None
        payload = self._opener.open(sealed)
        if payload is None:
            raise ForgedFrameError(
                f"frame {self._opener.counter} of {len(sealed)} bytes failed its tag "
                "(forged, replayed or reordered)"
            )
        return decode_payload(payload, max_hops=self.decoder.max_hops)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await self.stream.aclose()


def _seal_frames(sealer: FrameSealer, data: bytes) -> bytes:
    """Append a tag to each frame in ``data``, its length prefix growing to match."""
    (length,) = HEADER.unpack_from(data)
    if HEADER_SIZE + length == len(data):  # the usual case: one frame
        sealed = sealer.seal(data[HEADER_SIZE:])
        return HEADER.pack(len(sealed)) + sealed
    out = []
    pos = 0
    view = memoryview(data)
    while pos < len(data):
        (length,) = HEADER.unpack_from(data, pos)
        start = pos + HEADER_SIZE
        sealed = sealer.seal(bytes(view[start : start + length]))
        out.append(HEADER.pack(len(sealed)))
        out.append(sealed)
        pos = start + length
    return b"".join(out)


@attrs.frozen
class Identity:
    """What this node says about itself in HELLO."""

    cluster: str
    name: str
    role: str
    address: str
    incarnation: int
    cookie: str = attrs.field(repr=False)
    algedonic_port: int = 0  # the bound algedonic UDP port (0: none)


@attrs.frozen
class PeerInfo:
    """What the handshake established about the other side."""

    name: str
    role: str
    address: str
    incarnation: int
    we_initiated: bool
    algedonic_port: int = 0  # where it receives algedonic datagrams (0: it does not)


async def handshake(
    framed: FramedStream,
    me: Identity,
    *,
    initiator: bool,
    time_limit_s: float,
    admit: Callable[[PeerInfo], tuple[str, str] | None] = lambda _info: None,
) -> PeerInfo:
    """Run the handshake; return the authenticated peer or raise HandshakeError.

    ``admit`` is asked after the cookie proof and may return ``(kind, reason)``
    to refuse (duplicate name, duplicate connection); the peer then gets BYE.
    """
    try:
        with trio.fail_after(time_limit_s):
            return await _handshake(framed, me, initiator=initiator, admit=admit)
    except trio.TooSlowError:
        raise HandshakeError(
            f"handshake timed out after {time_limit_s:g} s", kind=TIMEOUT
        ) from None
    except ConnectionClosedError as exc:
        # A refusing peer sends BYE and hangs up; our send may fail first.
        # Read what it left us, so the reason it gave is not lost.
        bye = await _pending_bye(framed)
        if bye is not None:
            raise _refused(bye.node, bye.reason) from exc
        raise HandshakeError(
            f"connection lost during handshake: {exc}", kind=CONNECTION_LOST
        ) from exc
    except HandshakeError:
        raise
    except ProtocolError as exc:
        raise HandshakeError(f"bad handshake message: {exc}", kind=BAD_MESSAGE) from exc


async def _handshake(
    framed: FramedStream,
    me: Identity,
    *,
    initiator: bool,
    admit: Callable[[PeerInfo], tuple[str, str] | None],
) -> PeerInfo:
    nonce = secrets.token_bytes(NONCE_SIZE)
    await framed.send(
        Hello(
            PROTOCOL_VERSION,
            me.cluster,
            me.name,
            me.role,
            nonce,
            me.address,
            me.incarnation,
            me.algedonic_port,
        )
    )
    hello = await framed.receive()
    if isinstance(hello, Bye):
        raise _refused(hello.node, hello.reason)
    if not isinstance(hello, Hello):
        raise HandshakeError(
            f"expected HELLO, got {type(hello).__name__.upper()}", kind=BAD_MESSAGE
        )
    if hello.version != PROTOCOL_VERSION:
        await _refuse(framed, me, VERSION_MISMATCH, f"we speak version {PROTOCOL_VERSION}")
        raise HandshakeError(
            f"protocol version mismatch: peer speaks {hello.version}, we speak {PROTOCOL_VERSION}",
            kind=VERSION_MISMATCH,
        )
    if hello.cluster != me.cluster:
        await _refuse(framed, me, WRONG_CLUSTER, f"this is cluster {me.cluster!r}")
        raise HandshakeError(
            f"peer {hello.node!r} is in cluster {hello.cluster!r}, not ours", kind=WRONG_CLUSTER
        )
    if hello.node == me.name:
        await _refuse(framed, me, DUPLICATE_NAME, f"{me.name!r} is this node's name")
        raise HandshakeError(
            f"peer uses our own name {me.name!r} (duplicate name, or ourselves)", kind=OWN_NAME
        )

    init_name, resp_name = (me.name, hello.node) if initiator else (hello.node, me.name)
    init_nonce, resp_nonce = (nonce, hello.nonce) if initiator else (hello.nonce, nonce)

    def mac(from_initiator: bool) -> bytes:
        return auth_mac(
            me.cookie,
            cluster=me.cluster,
            initiator=init_name,
            responder=resp_name,
            initiator_nonce=init_nonce,
            responder_nonce=resp_nonce,
            from_initiator=from_initiator,
        )

    await framed.send(Auth(mac(initiator)))
    proof = await framed.receive()
    if isinstance(proof, Bye):
        raise _refused(hello.node, proof.reason)
    if not isinstance(proof, Auth):
        raise HandshakeError(f"expected AUTH, got {type(proof).__name__.upper()}", kind=BAD_MESSAGE)
    if not verify_mac(mac(not initiator), proof.mac):
        await _refuse(framed, me, AUTH_FAILED, "cookie proof did not verify")
        raise AuthenticationError(f"peer {hello.node!r} failed the cookie proof (wrong cookie)")
    info = PeerInfo(
        hello.node, hello.role, hello.address, hello.incarnation, initiator, hello.algedonic_port
    )
    refused = admit(info)
    if refused is not None:
        kind, reason = refused
        await _refuse(framed, me, kind, reason)
        raise HandshakeError(f"refused peer {hello.node!r}: {reason}", kind=kind)
    await framed.send(Welcome(me.name))
    welcome = await framed.receive()
    if isinstance(welcome, Bye):
        raise _refused(hello.node, welcome.reason)
    if not isinstance(welcome, Welcome) or welcome.node != hello.node:
        raise HandshakeError(
            f"expected WELCOME from {hello.node!r}, got {welcome!r:.80}", kind=BAD_MESSAGE
        )
    keys = None
    if not isinstance(framed.stream, trio.SSLStream):  # with TLS, TLS protects the frames
        keys = session_keys(
            me.cookie,
            cluster=me.cluster,
            initiator=init_name,
            responder=resp_name,
            initiator_nonce=init_nonce,
            responder_nonce=resp_nonce,
        )
    framed.established(keys, initiator=initiator)
    return info


async def _pending_bye(framed: FramedStream) -> Bye | None:
    with trio.move_on_after(0.5):
        try:
            while True:
                msg = await framed.receive()
                if isinstance(msg, Bye):
                    return msg
        except (ConnectionClosedError, ProtocolError):
            return None
    return None


async def _refuse(framed: FramedStream, me: Identity, kind: str, text: str) -> None:
    """Send BYE with the reason, then linger until the peer hangs up.

    Closing at once with the peer's bytes unread makes TCP send a RST, which
    destroys the BYE in flight; reading until EOF (briefly) lets it arrive.
    Shielded from the handshake's deadline, so a refusal is counted as what
    it is, not as a timeout, when the peer lingers too.
    """
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        try:
            await framed.send(Bye(me.name, f"{kind}: {text}"))
            while True:
                await framed.receive()
        except (ConnectionClosedError, ProtocolError):
            pass


def _nothing() -> None:
    pass
