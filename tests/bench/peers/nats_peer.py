"""nats-py in its own OS process, driven by the harness (JSON lines, see proto.py).

``python -m tests.bench.peers.nats_peer URL``: connects to nats-server, prints
``{"connected": URL}`` and serves commands: ``count`` + ``drain`` (subscriber),
``publish`` (publisher), ``echo`` (responder) and ``rtt`` (request/reply).
Payloads are msgpack-packed by the sender and unpacked by the receiver, as our
nodes do for every event.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import msgpack
import nats

from ..proto import MAX_WAIT_S, PAYLOAD, emit, error, parse


class Commands:
    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.n = 0
        self.first_ns = 0
        self.last_ns = 0

    async def cmd_count(self, subject: str) -> dict[str, Any]:
        unpackb = msgpack.unpackb

        async def on_msg(msg: Any) -> None:
            unpackb(msg.data)
            self.n += 1
            self.last_ns = time.time_ns()
            if self.n == 1:
                self.first_ns = self.last_ns

        await self.nc.subscribe(subject, cb=on_msg)
        await self.nc.flush(timeout=10)  # the server has the subscription before we say so
        return {"ok": True}

    async def cmd_drain(self, expect: int, idle_s: float, timeout_s: float) -> dict[str, Any]:
        last, last_change = self.n, time.monotonic()
        reason = "timeout"
        deadline = time.monotonic() + min(timeout_s, MAX_WAIT_S)
        while time.monotonic() < deadline:
            if self.n >= expect:
                reason = "all"
                break
            if self.n != last:
                last, last_change = self.n, time.monotonic()
            elif self.n and time.monotonic() - last_change > idle_s:
                reason = "idle"
                break
            await asyncio.sleep(0.005)
        return {
            "received": self.n,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "reason": reason,
        }

    async def cmd_publish(self, n: int, subject: str, flush_timeout_s: float) -> dict[str, Any]:
        publish, packb = self.nc.publish, msgpack.packb
        t0 = time.time_ns()
        for _ in range(n):
            await publish(subject, packb(PAYLOAD))
        t1 = time.time_ns()
        await self.nc.flush(timeout=flush_timeout_s)
        return {"published": n, "t0_ns": t0, "t1_ns": t1, "flushed_ns": time.time_ns()}

    async def cmd_echo(self, subject: str) -> dict[str, Any]:
        unpackb, packb = msgpack.unpackb, msgpack.packb

        async def on_request(msg: Any) -> None:
            await msg.respond(packb(unpackb(msg.data)))

        await self.nc.subscribe(subject, cb=on_request)
        await self.nc.flush(timeout=10)
        return {"ok": True}

    async def cmd_rtt(
        self, m: int, warmup: int, timeout_s: float, total_s: float, subject: str
    ) -> dict[str, Any]:
        samples: list[int] = []
        timeouts = 0
        deadline = time.monotonic() + min(total_s, MAX_WAIT_S)
        packb, unpackb = msgpack.packb, msgpack.unpackb
        for seq in range(warmup + m):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter_ns()
            try:
                reply = await self.nc.request(subject, packb({**PAYLOAD, "seq": seq}), timeout_s)
            except nats.errors.TimeoutError:
                timeouts += 1
                continue
            t1 = time.perf_counter_ns()
            if unpackb(reply.data).get("seq") != seq:
                raise RuntimeError(f"reply to {seq} carried another seq")
            if seq >= warmup:
                samples.append(t1 - t0)
        return {"samples_ns": samples, "timeouts": timeouts}


async def main(url: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=5)
    try:
        commands = Commands(nc)
        emit({"connected": url})
        for _ in range(100_000):
            cmd = parse(await reader.readline())
            name = cmd.pop("cmd", None)
            if name == "exit":
                return
            handler = getattr(commands, f"cmd_{name}", None)
            if handler is None:
                emit({"error": f"unknown command {name!r}"})
                continue
            try:
                emit(await handler(**cmd))
            except Exception as exc:
                emit(error(exc))
    finally:
        await nc.close()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1]))
    except Exception as exc:
        emit(error(exc))
        raise
