"""Wire codec, sans-IO: frames, message types, msgpack, validation and limits.

A frame is a 4-byte big-endian length followed by exactly one msgpack object,
``[kind, field, ...]``. ``encode(message)`` makes a frame; a ``Decoder`` is fed
bytes as they arrive and yields typed messages. Everything the decoder finds
wrong with untrusted input is a ``ProtocolError`` subclass whose message says
what was wrong and how big. An oversize length prefix is rejected as soon as
its 4 bytes arrive, before any payload is buffered.
"""

from __future__ import annotations

import enum
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Protocol

import attrs
import msgpack

from node.core.batch import RUN_FIELDS, Run, item_size, items_of
from node.core.events import DEFAULT_MAX_HOPS, Channel, Event
from node.core.hlc import MAX_NODE_NAME, Timestamp
from node.errors import (
    FrameTooLargeError,
    InvalidMessageError,
    LimitExceededError,
    MalformedFrameError,
    ProtocolError,
    UnknownMessageError,
)

# 2: EVENTS carry link sequence numbers and acks; ACK; heartbeats carry wall time.
# 3: without TLS, every frame after WELCOME ends in a 16-byte tag (node.core.auth).
# 4: HELLO carries the sender's algedonic UDP port (8 fields).
#    An event is [type, channel, data, source, [physical, logical, node], hops,
#    compressed] (the hlc nested: batches pack the Event tuples as they are).
#    EVENTS ends in ack_now (the receiver delays other acks).
# 5: EVENTS carry runs of events (node.core.batch) beside single events.
# 6: frames of LONG_FRAME bytes or more are tagged with HMAC-SHA256 (node.core.auth).
PROTOCOL_VERSION = 6
DEFAULT_MAX_FRAME = 1 << 20
HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
# Per-value limits inside one frame. The frame size already bounds memory;
# these keep one hostile frame from becoming millions of Python objects.
MAX_STR_LEN = 256 * 1024
MAX_BIN_LEN = 256 * 1024
MAX_ARRAY_LEN = 65_536
MAX_MAP_LEN = 65_536
MAX_BATCH = 10_000
MAX_MEMBERS = 4_096
NONCE_SIZE = 16
MAC_SIZE = 32
MAX_REASON = 1_024


class Kind(enum.IntEnum):
    HELLO = 1
    AUTH = 2
    WELCOME = 3
    EVENTS = 4
    HEARTBEAT = 5
    ALGEDONIC = 6
    ALGEDONIC_ACK = 7
    RESOLVE = 8
    BYE = 9
    ACK = 10


class Message(Protocol):
    KIND: ClassVar[Kind]

    def to_wire(self) -> list[Any]: ...


# --- field validation (one place, so every message says errors the same way) ---


def _name(value: object, field: str) -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_NODE_NAME:
        raise InvalidMessageError(f"{field} must be a string of 1..{MAX_NODE_NAME} chars")
    return value


def _text(value: object, field: str, max_len: int = MAX_REASON) -> str:
    if type(value) is not str or len(value) > max_len:
        raise InvalidMessageError(f"{field} must be a string of at most {max_len} chars")
    return value


def _bool(value: object, field: str) -> bool:
    if type(value) is not bool:
        raise InvalidMessageError(f"{field} must be a bool, got {value!r:.40}")
    return value


def _int(value: object, field: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise InvalidMessageError(f"{field} must be an int in [{lo}, {hi}], got {value!r:.30}")
    return value


def _bytes(value: object, field: str, size: int) -> bytes:
    if type(value) is not bytes or len(value) != size:
        raise InvalidMessageError(f"{field} must be {size} bytes")
    return value


def _names(value: object, field: str, max_items: int = MAX_MEMBERS) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > max_items:
        raise InvalidMessageError(f"{field} must be a list of at most {max_items} names")
    return tuple(_name(v, field) for v in value)


def _fields(raw: list[Any], n: int, kind: Kind) -> list[Any]:
    if len(raw) != n:
        raise InvalidMessageError(f"{kind.name} needs {n} fields, got {len(raw)}")
    return raw


# --- messages -------------------------------------------------------------------


@attrs.frozen
class Hello:
    """First message both ways: who I am and a fresh nonce for the cookie proof."""

    KIND: ClassVar[Kind] = Kind.HELLO
    version: int
    cluster: str
    node: str
    role: str
    nonce: bytes
    address: str = ""  # where this node listens ("" for none, e.g. an observer)
    incarnation: int = 0  # random per process start: tells a restart from a duplicate
    # The UDP port its algedonic datagrams are received on (0: none, skip that
    # path); on the host of ``address``.
    algedonic_port: int = 0

    FIELDS: ClassVar[int] = 8

    def to_wire(self) -> list[Any]:
        return [
            self.version,
            self.cluster,
            self.node,
            self.role,
            self.nonce,
            self.address,
            self.incarnation,
            self.algedonic_port,
        ]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Hello:
        # Another version's HELLO (v3 had 7 fields) need not have our shape:
        # it is reported as a version mismatch, not as a malformed HELLO.
        if raw and type(raw[0]) is int and raw[0] != PROTOCOL_VERSION:
            try:
                return cls._checked(raw)
            except InvalidMessageError:
                return cls(_int(raw[0], "HELLO version", 0, 65_535), "?", "?", "?", b"", "", 0)
        return cls._checked(raw)

    @classmethod
    def _checked(cls, raw: list[Any]) -> Hello:
        version, cluster, node, role, nonce, address, incarnation, udp = _fields(
            raw, cls.FIELDS, cls.KIND
        )
        return cls(
            _int(version, "HELLO version", 0, 65_535),
            _name(cluster, "HELLO cluster"),
            _name(node, "HELLO node"),
            _name(role, "HELLO role"),
            _bytes(nonce, "HELLO nonce", NONCE_SIZE),
            _text(address, "HELLO address", 300),
            _int(incarnation, "HELLO incarnation"),
            _int(udp, "HELLO algedonic_port", 0, 65_535),
        )


@attrs.frozen
class Auth:
    """HMAC-SHA256 proof that the sender knows the cluster cookie."""

    KIND: ClassVar[Kind] = Kind.AUTH
    mac: bytes

    def to_wire(self) -> list[Any]:
        return [self.mac]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Auth:
        (mac,) = _fields(raw, 1, cls.KIND)
        return cls(_bytes(mac, "AUTH mac", MAC_SIZE))


@attrs.frozen
class Welcome:
    """The peer accepted our proof: the connection is established."""

    KIND: ClassVar[Kind] = Kind.WELCOME
    node: str

    def to_wire(self) -> list[Any]:
        return [self.node]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Welcome:
        (node,) = _fields(raw, 1, cls.KIND)
        return cls(_name(node, "WELCOME node"))


MAX_SEQ = 2**63 - 1


@attrs.frozen
class Events:
    """A batch of replicated events with link sequence numbers ``first_seq``,
    ``first_seq + 1``, ...; ``ack_floor`` is the sender's lowest unacknowledged
    number; ``ack`` piggybacks the sender's cumulative ack of the reverse
    direction (0: none).

    ``items`` are runs and single events (node.core.batch); :meth:`of` makes
    them from Event objects. Decoded from the wire, only the runs' shape has
    been checked (so the frame's numbering is known) and a single event is
    its raw array; the receiver validates the content (``Run.events``, or
    event by event with ``Event.from_wire``), so that one bad event is refused
    on its own and the link's numbering stays whole.
    """

    KIND: ClassVar[Kind] = Kind.EVENTS
    items: tuple[Any, ...]
    first_seq: int = 1
    ack_floor: int = 1
    ack: int = 0
    # The sender wants this frame acknowledged at once, not after the receiver's
    # ack delay: its window is full, or a producer waits (QUIC's IMMEDIATE_ACK).
    ack_now: bool = False

    @classmethod
    def of(
        cls,
        events: Sequence[Event],
        first_seq: int = 1,
        ack_floor: int = 1,
        ack: int = 0,
        ack_now: bool = False,
    ) -> Events:
        """The frame for ``events`` (consecutive numbers from ``first_seq``)."""
        return cls(items_of(events), first_seq, ack_floor, ack, ack_now)

    @property
    def count(self) -> int:
        """How many events (and link sequence numbers) the frame carries."""
        return sum(map(item_size, self.items))

    def to_wire(self) -> list[Any]:
        # Runs and Events go to msgpack as they are (named tuples pack as
        # arrays; a Channel packs as its value through pack_default).
        return [self.first_seq, self.ack_floor, self.ack, list(self.items), self.ack_now]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Events:
        first_seq, ack_floor, ack, batch, ack_now = _fields(raw, 5, cls.KIND)
        if not isinstance(batch, list) or len(batch) > MAX_BATCH:
            raise InvalidMessageError(f"EVENTS items must be a list of at most {MAX_BATCH}")
        room = MAX_BATCH
        items = []
        for item in batch:
            # A run (its shape checked here: it fixes the numbering), or one
            # event, whatever it holds: checked, and maybe refused, on its own.
            if type(item) is list and len(item) == RUN_FIELDS:
                item = Run.from_wire(item, room)
                room -= len(item.data)
            else:
                room -= 1
            items.append(item)
        if room < 0:
            raise InvalidMessageError(f"EVENTS frame of more than {MAX_BATCH} events")
        first = _int(first_seq, "EVENTS first_seq", 1, MAX_SEQ - (MAX_BATCH - room))
        return cls(
            tuple(items),
            first,
            _int(ack_floor, "EVENTS ack_floor", 1, first),
            _int(ack, "EVENTS ack", 0, MAX_SEQ),
            _bool(ack_now, "EVENTS ack_now"),
        )


@attrs.frozen
class Ack:
    """Cumulative acknowledgement: the sender of this frame has processed the
    peer's events up to ``upto``; ``refused`` lists those it refused, and why
    (e.g. ``clock_offset``), so the peer counts them as dropped, not sent."""

    KIND: ClassVar[Kind] = Kind.ACK
    upto: int
    refused: tuple[tuple[int, str], ...] = ()

    def to_wire(self) -> list[Any]:
        return [self.upto, [[seq, why] for seq, why in self.refused]]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Ack:
        upto, refused = _fields(raw, 2, cls.KIND)
        if not isinstance(refused, list) or len(refused) > MAX_BATCH * 4:
            raise InvalidMessageError("ACK refused must be a list of [seq, reason]")
        out = []
        for item in refused:
            if not isinstance(item, list) or len(item) != 2:
                raise InvalidMessageError("ACK refused must be a list of [seq, reason]")
            out.append((_int(item[0], "ACK refused seq", 1, MAX_SEQ), _name(item[1], "ACK reason")))
        return cls(_int(upto, "ACK upto", 0, MAX_SEQ), tuple(out))


@attrs.frozen
class Heartbeat:
    """Liveness plus the sender's view: whom it hears, whom it knows, how it is."""

    KIND: ClassVar[Kind] = Kind.HEARTBEAT
    node: str
    seq: int
    reach: tuple[str, ...]  # peers whose heartbeats the sender currently hears
    members: Mapping[str, str]  # known member name -> listen address
    health: Mapping[str, float]  # e.g. {"s1": 1.0, ..., "overall": 0.93}
    role: str = "member"
    wall_ms: int = 0  # the sender's wall clock when sent: clock offsets show before refusals

    def to_wire(self) -> list[Any]:
        return [
            self.node,
            self.seq,
            list(self.reach),
            dict(self.members),
            dict(self.health),
            self.role,
            self.wall_ms,
        ]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Heartbeat:
        node, seq, reach, members, health, role, wall_ms = _fields(raw, 7, cls.KIND)
        if not isinstance(members, dict) or len(members) > MAX_MEMBERS:
            raise InvalidMessageError(f"HEARTBEAT members must be a map of at most {MAX_MEMBERS}")
        for name, addr in members.items():
            _name(name, "HEARTBEAT member name")
            _text(addr, "HEARTBEAT member address", 300)
        if not isinstance(health, dict) or len(health) > 64:
            raise InvalidMessageError("HEARTBEAT health must be a map of at most 64 figures")
        for key, val in health.items():
            _name(key, "HEARTBEAT health key")
            if type(val) not in (float, int) or not 0.0 <= val <= 1.0:
                raise InvalidMessageError(f"HEARTBEAT health {key} must be a number in [0, 1]")
        return cls(
            _name(node, "HEARTBEAT node"),
            _int(seq, "HEARTBEAT seq"),
            _names(reach, "HEARTBEAT reach"),
            members,
            {k: float(v) for k, v in health.items()},
            _name(role, "HEARTBEAT role"),
            _int(wall_ms, "HEARTBEAT wall_ms"),
        )


@attrs.frozen
class Algedonic:
    """An alarm that bypasses every limit; relayed along ``path`` and acknowledged."""

    KIND: ClassVar[Kind] = Kind.ALGEDONIC
    signal_id: str
    event: Event
    path: tuple[str, ...]

    def to_wire(self) -> list[Any]:
        return [self.signal_id, self.event.to_wire(), list(self.path)]

    @classmethod
    def from_wire(cls, raw: list[Any], *, max_hops: int = DEFAULT_MAX_HOPS) -> Algedonic:
        signal_id, event, path = _fields(raw, 3, cls.KIND)
        return cls(
            _name(signal_id, "ALGEDONIC signal_id"),
            Event.from_wire(event, max_hops=max_hops),
            _names(path, "ALGEDONIC path", 64),
        )


@attrs.frozen
class AlgedonicAck:
    """``node`` confirms it received signal ``signal_id`` raised by ``origin``."""

    KIND: ClassVar[Kind] = Kind.ALGEDONIC_ACK
    signal_id: str
    origin: str
    node: str

    def to_wire(self) -> list[Any]:
        return [self.signal_id, self.origin, self.node]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> AlgedonicAck:
        signal_id, origin, node = _fields(raw, 3, cls.KIND)
        return cls(
            _name(signal_id, "ALGEDONIC_ACK signal_id"),
            _name(origin, "ALGEDONIC_ACK origin"),
            _name(node, "ALGEDONIC_ACK node"),
        )


@attrs.frozen
class Resolve:
    """An operator's partition decision: the side holding ``keep`` continues.

    ``epoch`` orders decisions (higher wins; equal epochs by ``hlc``).
    ``retired``: the partition it was made for is over; it is passed on for
    its epoch only and never applied.
    """

    KIND: ClassVar[Kind] = Kind.RESOLVE
    decision_id: str
    keep: tuple[str, ...]
    operator: str
    reason: str
    hlc: Timestamp
    epoch: int = 1
    retired: bool = False

    def to_wire(self) -> list[Any]:
        return [
            self.decision_id,
            list(self.keep),
            self.operator,
            self.reason,
            self.hlc.to_wire(),
            self.epoch,
            self.retired,
        ]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Resolve:
        decision_id, keep, operator, reason, hlc, epoch, retired = _fields(raw, 7, cls.KIND)
        if type(retired) is not bool:
            raise InvalidMessageError("RESOLVE retired must be true or false")
        return cls(
            _decision_id(decision_id),
            _names(keep, "RESOLVE keep"),
            _name(operator, "RESOLVE operator"),
            _text(reason, "RESOLVE reason"),
            Timestamp.from_wire(hlc),
            _int(epoch, "RESOLVE epoch", 1, 2**53),
            retired,
        )


#: A decision id is the deciding node's name, "-" and a random suffix, so it
#: may be longer than a node name: its own rule, not the name rule.
MAX_DECISION_ID = MAX_NODE_NAME + 1 + 64


def _decision_id(value: object) -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_DECISION_ID:
        raise InvalidMessageError(
            f"RESOLVE decision_id must be a string of 1..{MAX_DECISION_ID} chars"
        )
    return value


@attrs.frozen
class Bye:
    """The sender is leaving on purpose: a departure, not a failure."""

    KIND: ClassVar[Kind] = Kind.BYE
    node: str
    reason: str = ""

    def to_wire(self) -> list[Any]:
        return [self.node, self.reason]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Bye:
        node, reason = _fields(raw, 2, cls.KIND)
        return cls(_name(node, "BYE node"), _text(reason, "BYE reason"))


AnyMessage = (
    Hello | Auth | Welcome | Events | Ack | Heartbeat | Algedonic | AlgedonicAck | Resolve | Bye
)

_DECODERS: dict[int, Any] = {
    Kind.HELLO: Hello.from_wire,
    Kind.AUTH: Auth.from_wire,
    Kind.WELCOME: Welcome.from_wire,
    Kind.EVENTS: Events.from_wire,
    Kind.HEARTBEAT: Heartbeat.from_wire,
    Kind.ALGEDONIC: Algedonic.from_wire,
    Kind.ALGEDONIC_ACK: AlgedonicAck.from_wire,
    Kind.RESOLVE: Resolve.from_wire,
    Kind.BYE: Bye.from_wire,
    Kind.ACK: Ack.from_wire,
}


_ALGEDONIC = int(Kind.ALGEDONIC)  # once: an Enum member read from its class is slow


# One msgpack Packer and one Unpacker per thread, reused (packb and unpackb
# build theirs per call: about 0.5 µs a frame each). Neither is thread-safe;
# nodes in different threads each get their own.
_codec = threading.local()


def pack_default(obj: object) -> Any:
    """msgpack's hook for what it cannot pack itself: a Channel packs as its value.

    Everything else in a message (event data included, validated where it
    entered) is plain msgpack; anything that is not is a bug, reported as such.
    """
    if type(obj) is Channel:
        return obj._value_
    raise TypeError(f"cannot encode {type(obj).__name__} on the wire")


def encode(message: Message, *, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """One frame for ``message``. FrameTooLargeError if it would not be accepted."""
    packer = getattr(_codec, "packer", None)
    if packer is None:
        packer = _codec.packer = msgpack.Packer(use_bin_type=True, default=pack_default)
    payload: bytes = packer.pack([int(message.KIND), *message.to_wire()])
    if len(payload) > max_frame:
        raise FrameTooLargeError(
            f"{message.KIND.name} frame of {len(payload)} bytes exceeds max_frame {max_frame}"
        )
    return HEADER.pack(len(payload)) + payload


def _unpack(payload: bytes) -> Any:
    """One msgpack object from ``payload``, which must hold exactly one.

    A streaming Unpacker per thread, reused (unpackb parses its nine limits
    on every call: about 0.5 µs a frame); after any error it is dropped, since
    its state is then unknown. ExtraData for bytes after the object.
    """
    state = _codec.__dict__
    unpacker = state.get("unpacker")
    if unpacker is None:
        unpacker = state["unpacker"] = msgpack.Unpacker(
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_buffer_size=0,  # one frame at a time, bounded by max_frame
            max_str_len=MAX_STR_LEN,
            max_bin_len=MAX_BIN_LEN,
            max_array_len=MAX_ARRAY_LEN,
            max_map_len=MAX_MAP_LEN,
            max_ext_len=0,
        )
        state["fed"] = 0
    try:
        unpacker.feed(payload)
        state["fed"] += len(payload)
        obj = unpacker.unpack()
        if unpacker.tell() != state["fed"]:
            raise msgpack.ExtraData(obj, b"")
    except BaseException:
        del state["unpacker"]
        raise
    return obj


def decode_payload(payload: bytes, *, max_hops: int = DEFAULT_MAX_HOPS) -> AnyMessage:
    """Decode one frame's payload (without its length prefix) into a message."""
    try:
        obj = _unpack(payload)
    except msgpack.OutOfData:
        raise MalformedFrameError(
            f"frame of {len(payload)} bytes is not msgpack: incomplete input"
        ) from None
    except msgpack.StackError:
        raise LimitExceededError(f"frame of {len(payload)} bytes nests too deeply") from None
    except msgpack.ExtraData:
        raise MalformedFrameError(
            f"frame of {len(payload)} bytes holds more than one msgpack object"
        ) from None
    except ValueError as exc:
        # msgpack reports size limits, bad UTF-8, bad map keys and truncated
        # input all as ValueError; say which it was.
        text = str(exc)
        if "exceeds max" in text:
            raise LimitExceededError(f"frame of {len(payload)} bytes: {text}") from None
        raise MalformedFrameError(f"frame of {len(payload)} bytes is not msgpack: {text}") from None
    except Exception as exc:  # untrusted bytes: nothing else may escape this boundary
        raise MalformedFrameError(
            f"frame of {len(payload)} bytes is not msgpack: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(obj, list) or not obj:
        raise InvalidMessageError(f"frame must hold a non-empty array, got {type(obj).__name__}")
    kind = obj[0]
    if type(kind) is not int:
        raise InvalidMessageError(f"message kind must be an int, got {kind!r:.30}")
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise UnknownMessageError(f"unknown message kind {kind}")
    fields = obj[1:]
    if kind == _ALGEDONIC:
        return decoder(fields, max_hops=max_hops)  # type: ignore[no-any-return]
    return decoder(fields)  # type: ignore[no-any-return]


class Decoder:
    """Incremental frame decoder: ``feed(bytes)`` then iterate for messages.

    Holds at most one partial frame (bounded by ``max_frame``) plus whatever
    complete frames were fed and not yet taken. An oversize length prefix
    leaves the stream out of sync, so the decoder stays failed: every later
    call raises the same error. A frame whose payload is bad was still framed
    correctly: it is consumed, its error raised, and the next frame decodes
    (the driver decides whether to count it and go on, or hang up).
    """

    __slots__ = ("_buf", "_failed", "_need", "max_frame", "max_hops")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, *, max_hops: int = DEFAULT_MAX_HOPS):
        if max_frame < 1:
            raise ValueError(f"max_frame must be positive, got {max_frame}")
        self.max_frame = max_frame
        self.max_hops = max_hops
        self._buf = bytearray()
        self._need: int | None = None  # payload length of the frame being read
        self._failed: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held and not yet decoded."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        """Add bytes from the stream. Rejects an oversize prefix at once."""
        if self._failed is not None:
            raise self._failed
        self._buf += data
        self._check_header()

    def _check_header(self) -> None:
        if self._need is None and len(self._buf) >= HEADER_SIZE:
            (length,) = HEADER.unpack_from(self._buf)
            if length > self.max_frame:
                self._buf.clear()
                self._fail(
                    FrameTooLargeError(
                        f"frame of {length} bytes exceeds max_frame {self.max_frame}"
                    )
                )
            self._need = length

    def _fail(self, exc: ProtocolError) -> None:
        self._failed = exc
        raise exc

    def next_message(self) -> AnyMessage | None:
        """The next complete message, or None if more bytes are needed."""
        payload = self.next_payload()
        if payload is None:
            return None
        return decode_payload(payload, max_hops=self.max_hops)

    def next_payload(self) -> bytes | None:
        """The next complete frame's payload, undecoded, or None if more bytes are needed."""
        if self._failed is not None:
            raise self._failed
        self._check_header()
        need = self._need
        if need is None or len(self._buf) < HEADER_SIZE + need:
            return None
        payload = bytes(self._buf[HEADER_SIZE : HEADER_SIZE + need])
        del self._buf[: HEADER_SIZE + need]
        self._need = None
        return payload

    def __iter__(self) -> Iterator[AnyMessage]:
        while (msg := self.next_message()) is not None:
            yield msg
