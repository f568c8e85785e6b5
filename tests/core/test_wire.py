"""Wire codec: framing, every message type, limits, and fuzzing."""

from __future__ import annotations

import struct

import attrs
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.core.events import Channel, Event
from node.core.hlc import Timestamp
from node.core.wire import (
    PROTOCOL_VERSION,
    Ack,
    Algedonic,
    AlgedonicAck,
    Auth,
    Bye,
    Decoder,
    Events,
    Heartbeat,
    Hello,
    Resolve,
    Welcome,
    encode,
)
from node.errors import (
    FrameTooLargeError,
    InvalidMessageError,
    LimitExceededError,
    MalformedFrameError,
    ProtocolError,
    UnknownMessageError,
)

EVENT = Event(
    "task_execution",
    Channel.S1_OPERATIONAL,
    {"task": "t1", "duration_ms": 12.5, "ok": True},
    "a",
    Timestamp(1_700_000_000_000, 0, "a"),
)

SAMPLES = [
    Hello(PROTOCOL_VERSION, "prod", "a", "member", b"n" * 16, "127.0.0.1:7401", 99, 7501),
    Auth(b"m" * 32),
    Welcome("b"),
    Events.of((EVENT, EVENT.relayed()), 17, 12, 5),
    Events.of((EVENT,), 3, 2, 0, True),
    Ack(42, ((40, "clock_offset"), (41, "invalid_event"))),
    Heartbeat(
        "a", 7, ("b", "c"), {"a": "h:1", "b": "h:2"}, {"overall": 0.9, "s1": 1}, "member", 12345
    ),
    Algedonic("sig-1", EVENT, ("a", "b")),
    AlgedonicAck("sig-1", "a", "c"),
    Resolve("d-1", ("a", "b"), "alice", "keep the majority", Timestamp(5, 1, "a")),
    Bye("a", "shutdown"),
]


def frame(obj: object) -> bytes:
    payload = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(payload)) + payload


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_roundtrip_every_message(msg: object) -> None:
    d = Decoder()
    d.feed(encode(msg))  # type: ignore[arg-type]
    got = list(d)
    if isinstance(msg, Events):
        (back,) = got
        assert isinstance(back, Events)
        assert attrs.evolve(back, items=()) == attrs.evolve(msg, items=())
        assert [Event.from_wire(raw) for raw in back.items] == list(msg.items)
    elif isinstance(msg, Heartbeat):
        assert got[0].health == {"overall": 0.9, "s1": 1.0}
        assert got[0].reach == msg.reach
    else:
        assert got == [msg]
    assert d.buffered == 0


def test_partial_input_waits_for_more_byte_by_byte() -> None:
    data = b"".join(encode(m) for m in SAMPLES)  # type: ignore[arg-type]
    d = Decoder()
    out = []
    for i in range(len(data)):
        d.feed(data[i : i + 1])
        out.extend(d)
    assert len(out) == len(SAMPLES)
    assert [type(m) for m in out] == [type(m) for m in SAMPLES]


def test_oversize_prefix_rejected_before_payload_is_buffered() -> None:
    d = Decoder(max_frame=1024)
    with pytest.raises(FrameTooLargeError, match="frame of 4096 bytes exceeds max_frame 1024"):
        d.feed(struct.pack(">I", 4096))
    assert d.buffered == 0
    # out of sync for good: later input is refused with the same error
    with pytest.raises(FrameTooLargeError):
        d.feed(b"x" * 10)
    assert d.buffered == 0


def test_oversize_prefix_split_across_feeds() -> None:
    d = Decoder(max_frame=100)
    d.feed(b"\x00\x00")
    with pytest.raises(FrameTooLargeError):
        d.feed(b"\xff\xff")


def test_encode_refuses_frames_the_peer_would_reject() -> None:
    big = Events.of(tuple(EVENT for _ in range(200)))
    with pytest.raises(FrameTooLargeError, match="EVENTS frame of"):
        encode(big, max_frame=1_000)


def test_bad_payload_is_consumed_and_stream_stays_usable() -> None:
    d = Decoder()
    d.feed(frame("just a string") + encode(Welcome("b")))
    with pytest.raises(InvalidMessageError, match="non-empty array"):
        d.next_message()
    assert list(d) == [Welcome("b")]


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (struct.pack(">I", 3) + b"\xc1\xc1\xc1", MalformedFrameError, "not msgpack"),
        (frame([4]), InvalidMessageError, "EVENTS needs 5 fields"),
        (frame([4, 5, 6, 0, [], False]), InvalidMessageError, "ack_floor"),
        (frame([4, 0, 1, 0, [], False]), InvalidMessageError, "first_seq"),
        (frame([4, 1, 1, 0, [], 1]), InvalidMessageError, "ack_now must be a bool"),
        (frame([10, 3, [[1]]]), InvalidMessageError, "ACK refused"),
        (frame([99, 1]), UnknownMessageError, "unknown message kind 99"),
        (frame(["4", []]), InvalidMessageError, "kind must be an int"),
        (frame([3, 7]), InvalidMessageError, "WELCOME node"),
        (frame([2, b"short"]), InvalidMessageError, "AUTH mac must be 32 bytes"),
        (
            frame([1, PROTOCOL_VERSION, "c", "a", "member", b"x" * 15, "", 0, 0]),
            InvalidMessageError,
            "nonce",
        ),
        (
            frame([1, PROTOCOL_VERSION, "c", "a", "member", b"x" * 16, "", 0]),
            InvalidMessageError,
            "HELLO needs 8 fields, got 7",
        ),
        (
            frame([1, PROTOCOL_VERSION, "c", "a", "member", b"x" * 16, "", 0, 65_536]),
            InvalidMessageError,
            "HELLO algedonic_port",
        ),
        (
            frame([1, PROTOCOL_VERSION, "c", "a", "member", b"x" * 16, "", 0, "7401"]),
            InvalidMessageError,
            "HELLO algedonic_port",
        ),
        (frame([1, PROTOCOL_VERSION]), InvalidMessageError, "HELLO needs 8 fields, got 1"),
        (frame([1]), InvalidMessageError, "HELLO needs 8 fields, got 0"),
        (struct.pack(">I", 2) + b"\x92\x03", MalformedFrameError, "incomplete"),
        (frame([3, "a" * 300_000]), LimitExceededError, "max_str_len"),
        (frame([4, [None] * 70_000]), LimitExceededError, "max_array_len"),
        (
            frame([5, "a", 1, [], {"a": "x"}, {"overall": 3.0}, "member", 0]),
            InvalidMessageError,
            "health",
        ),
        (struct.pack(">I", 2) + b"\x91\xc0", InvalidMessageError, "kind must be an int"),
    ],
)
def test_malformed_frames(data: bytes, error: type[Exception], match: str) -> None:
    d = Decoder()
    with pytest.raises(error, match=match):
        d.feed(data)
        list(d)


def test_hello_of_another_version_still_decodes_its_version() -> None:
    d = Decoder()
    d.feed(frame([1, PROTOCOL_VERSION + 1, "c", "a", "member", b"x" * 16, "", 0, "new field"]))
    (hello,) = list(d)
    assert isinstance(hello, Hello) and hello.version == PROTOCOL_VERSION + 1


@pytest.mark.parametrize(
    "fields",
    [
        [3, "c", "a", "member", b"x" * 16, "a:7401", 5],  # what a v3 node sends
        [3, "c", "a", "member", b"x" * 16, "a:7401", 5, 7501],  # our shape, old number
        [4, "c", "a", "member", b"x" * 16, "a:7401", 5, 7501],  # v4: HELLO as ours, rows
        [5, "c", "a", "member", b"x" * 16, "a:7401", 5, 7501],  # v5: long frames' tags
        [3],
    ],
)
def test_an_older_hello_decodes_as_its_version_for_the_handshake_to_refuse(
    fields: list[object],
) -> None:
    # Not a malformed frame: the handshake must be able to say "version mismatch".
    assert PROTOCOL_VERSION == 6
    d = Decoder()
    d.feed(frame([1, *fields]))
    (hello,) = list(d)
    assert isinstance(hello, Hello) and hello.version == fields[0]


def test_hello_carries_the_algedonic_port_as_its_eighth_field() -> None:
    hello = Hello(PROTOCOL_VERSION, "c", "a", "member", b"x" * 16, "a:7401", 5, 7501)
    assert hello.to_wire()[7] == 7501 and len(hello.to_wire()) == 8
    d = Decoder()
    d.feed(encode(hello))
    assert list(d) == [hello]
    assert Hello(PROTOCOL_VERSION, "c", "a", "member", b"x" * 16).algedonic_port == 0


def test_deep_nesting_is_a_limit_error() -> None:
    payload = b"\x91" * 5_000 + b"\xc0"
    d = Decoder()
    d.feed(struct.pack(">I", len(payload)) + payload)
    with pytest.raises(LimitExceededError):
        list(d)


def test_trailing_garbage_inside_a_frame() -> None:
    payload = msgpack.packb([3, "a"]) + b"\x00"
    d = Decoder()
    d.feed(struct.pack(">I", len(payload)) + payload)
    with pytest.raises(MalformedFrameError, match="more than one msgpack object"):
        list(d)


def test_event_hops_beyond_max_rejected() -> None:
    # Events are validated one by one by the receiver (one bad event is refused
    # alone and the link's numbering stays whole), so the frame decodes and the
    # event does not.
    d = Decoder(max_hops=2)
    far = Event(EVENT.type, EVENT.channel, EVENT.data, EVENT.source, EVENT.hlc, hops=3)
    d.feed(encode(Events.of((far,))))
    (msg,) = list(d)
    assert isinstance(msg, Events)
    (single,) = msg.items  # a lone event travels on its own, as its array
    with pytest.raises(InvalidMessageError, match="hops"):
        Event.from_wire(single, max_hops=2)
    d.feed(encode(Events.of((far,) * 5)))  # and in a run
    (msg,) = list(d)
    assert isinstance(msg, Events)
    (run,) = msg.items
    assert run.events(max_hops=2) is None
    with pytest.raises(InvalidMessageError, match="hops"):
        Event.from_wire(run.rows()[0], max_hops=2)


# --- fuzzing: only ProtocolError may ever escape ----------------------------------


def drain(d: Decoder, data: bytes, chunk: int) -> None:
    for i in range(0, len(data), max(chunk, 1)):
        try:
            d.feed(data[i : i + max(chunk, 1)])
        except ProtocolError:
            return
        while True:
            try:
                if d.next_message() is None:
                    break
            except FrameTooLargeError:
                return
            except ProtocolError:
                continue
        assert d.buffered <= 4 + d.max_frame + max(chunk, 1)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4_096), st.integers(1, 64))
def test_fuzz_random_bytes(data: bytes, chunk: int) -> None:
    drain(Decoder(max_frame=2_048), data, chunk)


VALID = b"".join(encode(m) for m in SAMPLES)  # type: ignore[arg-type]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255), st.sampled_from("sid")),
        min_size=1,
        max_size=8,
    ),
    st.integers(1, 97),
)
def test_fuzz_mutated_valid_frames(mutations: list[tuple[int, int, str]], chunk: int) -> None:
    data = bytearray(VALID)
    for pos, byte, op in mutations:
        pos %= max(len(data), 1)
        if op == "s":
            data[pos] = byte
        elif op == "i":
            data.insert(pos, byte)
        elif data:
            del data[pos]
    drain(Decoder(), bytes(data), chunk)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats()
        | st.text()
        | st.binary(),
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
        max_leaves=30,
    )
)
def test_fuzz_wrong_types_in_valid_msgpack(obj: object) -> None:
    for kind in range(0, 11):
        d = Decoder()
        try:
            d.feed(frame([kind, obj]) + frame([kind, *(obj if isinstance(obj, list) else [obj])]))
            list(d)
        except ProtocolError:
            pass
