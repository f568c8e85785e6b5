"""pyzmq PUSH/PULL in its own OS process, driven by the harness (see proto.py).

``python -m tests.bench.peers.zmq_peer pull``: binds PULL on 127.0.0.1 and a
free port, prints ``{"port": P}``; ``drain`` receives (and unpacks) until the
expected count, an idle gap or the deadline.
``python -m tests.bench.peers.zmq_peer push PORT``: connects PUSH; ``publish``
sends N msgpack-packed payloads. PUSH blocks at its high-water mark, so
nothing is dropped: zmq's own backpressure.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import msgpack
import zmq

from ..proto import MAX_WAIT_S, PAYLOAD, emit, error, read_cmd


def drain(sock: Any, expect: int, idle_s: float, timeout_s: float) -> dict[str, Any]:
    unpackb, recv = msgpack.unpackb, sock.recv
    n = first_ns = last_ns = 0
    reason = "timeout"
    deadline = time.monotonic() + min(timeout_s, MAX_WAIT_S)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while time.monotonic() < deadline:
        if n >= expect:
            reason = "all"
            break
        wait_ms = int(idle_s * 1000) if n else 100
        if not poller.poll(wait_ms):
            if n:
                reason = "idle"
                break
            continue
        # Take what is there without polling for each message.
        for _ in range(10_000):
            try:
                data = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            unpackb(data)
            n += 1
            last_ns = time.time_ns()
            if n == 1:
                first_ns = last_ns
            if n >= expect:
                break
    return {"received": n, "first_ns": first_ns, "last_ns": last_ns, "reason": reason}


def publish(sock: Any, n: int) -> dict[str, Any]:
    send, packb = sock.send, msgpack.packb
    t0 = time.time_ns()
    for _ in range(n):
        send(packb(PAYLOAD))
    return {"published": n, "t0_ns": t0, "t1_ns": time.time_ns()}


def main(argv: list[str]) -> None:
    ctx = zmq.Context()
    try:
        if argv[0] == "pull":
            sock = ctx.socket(zmq.PULL)
            port = sock.bind_to_random_port("tcp://127.0.0.1")
            emit({"port": port})
        else:
            sock = ctx.socket(zmq.PUSH)
            sock.connect(f"tcp://127.0.0.1:{int(argv[1])}")
            emit({"connected": True})
        sock.setsockopt(zmq.LINGER, 5000)  # close sends what is queued, for at most 5 s
        for _ in range(1_000):
            cmd = read_cmd()
            name = cmd.pop("cmd", None)
            if name == "exit":
                break
            try:
                if name == "drain":
                    emit(drain(sock, **cmd))
                elif name == "publish":
                    emit(publish(sock, **cmd))
                else:
                    emit({"error": f"unknown command {name!r}"})
            except Exception as exc:
                emit(error(exc))
        sock.close()
    finally:
        ctx.term()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception as exc:
        emit(error(exc))
        raise
