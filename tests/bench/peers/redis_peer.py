"""redis-py pub/sub in its own OS process, driven by the harness (see proto.py).

``python -m tests.bench.peers.redis_peer sub PORT CHANNEL``: subscribes (and
waits for the server's confirmation) before printing ``{"subscribed": ...}``;
``drain`` reads and unpacks messages. ``... pub PORT CHANNEL``: ``publish``
sends N msgpack-packed payloads through a pipeline flushed every 100 commands
(one round trip per PUBLISH would measure latency, not throughput).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import msgpack
import redis

from ..proto import MAX_WAIT_S, PAYLOAD, emit, error, read_cmd

PIPELINE = 100


def drain(pubsub: Any, expect: int, idle_s: float, timeout_s: float) -> dict[str, Any]:
    unpackb, get = msgpack.unpackb, pubsub.get_message
    n = first_ns = last_ns = 0
    reason = "timeout"
    deadline = time.monotonic() + min(timeout_s, MAX_WAIT_S)
    last_change = time.monotonic()
    while time.monotonic() < deadline:
        if n >= expect:
            reason = "all"
            break
        msg = get(timeout=0.05)
        if msg is None:
            if n and time.monotonic() - last_change > idle_s:
                reason = "idle"
                break
            continue
        if msg["type"] != "message":
            continue
        unpackb(msg["data"])
        n += 1
        last_ns = time.time_ns()
        last_change = time.monotonic()
        if n == 1:
            first_ns = last_ns
    return {"received": n, "first_ns": first_ns, "last_ns": last_ns, "reason": reason}


def publish(client: Any, channel: str, n: int) -> dict[str, Any]:
    packb = msgpack.packb
    pipe = client.pipeline(transaction=False)
    t0 = time.time_ns()
    for i in range(n):
        pipe.publish(channel, packb(PAYLOAD))
        if i % PIPELINE == PIPELINE - 1:
            pipe.execute()
    pipe.execute()
    return {"published": n, "t0_ns": t0, "t1_ns": time.time_ns()}


def main(argv: list[str]) -> None:
    role, port, channel = argv[0], int(argv[1]), argv[2]
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=5)
    pubsub = None
    if role == "sub":
        pubsub = client.pubsub()
        pubsub.subscribe(channel)
        confirm = pubsub.get_message(timeout=5)
        if not confirm or confirm["type"] != "subscribe":
            raise RuntimeError(f"no subscribe confirmation from redis: {confirm!r}")
        emit({"subscribed": channel})
    else:
        client.ping()
        emit({"connected": port})
    try:
        for _ in range(1_000):
            cmd = read_cmd()
            name = cmd.pop("cmd", None)
            if name == "exit":
                break
            try:
                if name == "drain" and pubsub is not None:
                    emit(drain(pubsub, **cmd))
                elif name == "publish":
                    emit(publish(client, channel, **cmd))
                else:
                    emit({"error": f"unknown command {name!r} for {role}"})
            except Exception as exc:
                emit(error(exc))
    finally:
        if pubsub is not None:
            pubsub.close()
        client.close()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception as exc:
        emit(error(exc))
        raise
