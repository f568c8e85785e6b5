"""Cost of frame tags (node.core.auth) against the cost of encoding the frame.

    python -m tests.bench.bench_frame_auth

Prints, per batch size, microseconds per frame to encode an EVENTS frame, to
tag it and to check its tag, and the tags' share of encode + decode.
"""

from __future__ import annotations

import time

from node.core.auth import SessionKeys, session_keys
from node.core.events import Channel, Event
from node.core.hlc import Timestamp
from node.core.wire import Decoder, Events, encode
from node.runtime.peer import _seal_frames

ROUNDS = 2000


def _per_frame(fn: object, rounds: int = ROUNDS) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / rounds * 1e6


def _row(keys: SessionKeys, batch: int) -> str:
    events = tuple(
        Event(
            "task_execution",
            Channel.S1_OPERATIONAL,
            {"i": i, "payload": "x" * 40},
            "a",
            Timestamp(1_700_000_000_000 + i, 0, "a"),
        )
        for i in range(batch)
    )
    message = Events.of(events, 1, 1, 0)
    data = encode(message)
    enc = _per_frame(lambda: encode(message))

    def decode() -> None:
        d = Decoder()
        d.feed(data)
        d.next_message()

    dec = _per_frame(decode)
    sealer = keys.sealer(initiator=True)
    tag = _per_frame(lambda: _seal_frames(sealer, data))
    sealed = keys.sealer(initiator=True).seal(data[4:])
    opener = keys.opener(initiator=False)

    def check() -> None:
        opener.counter = 0
        opener.open(sealed)

    chk = _per_frame(check)
    share = (tag + chk) / (enc + dec)
    return (
        f"{batch:5d}  {len(data):11d}  {enc:9.1f}  {dec:9.1f}  {tag:6.1f}  {chk:8.1f}"
        f"  {share:13.1%}"
    )


def main() -> None:
    keys = session_keys(
        "bench-cookie-0123",
        cluster="vsm",
        initiator="a",
        responder="b",
        initiator_nonce=b"i" * 16,
        responder_nonce=b"r" * 16,
    )
    print("batch  frame bytes  encode us  decode us  tag us  check us  tags/(enc+dec)")
    for batch in (1, 16, 256):
        print(_row(keys, batch))


if __name__ == "__main__":
    main()
