"""A userspace TCP proxy that delays, "loses" and resets, for hosts without ``tc netem``.

    python netproxy.py --listen 10.231.0.1:7501 --to 127.0.0.1:7401 \
        --jitter 0.05 --loss 0.2 --rto 0.2 [--reset 0.0] [--stats FILE]

It runs in a host's namespace in front of its daemon (which advertises the proxy's
address, so every connection to it passes here). Per chunk read, in each direction:

- ``--jitter J``: held for a uniform random 0..J seconds (order kept, as TCP would);
- ``--loss P``: with probability P the chunk is "lost": TCP below would retransmit it,
  so it is held a further ``--rto`` seconds (Linux's minimum RTO is 200 ms) and
  everything behind it waits too - what a lossy link does to one TCP stream;
- ``--reset P``: with probability P the connection is cut at once (both sides).

Counts go to ``--stats`` (JSON) once a second. Every queue is bounded.
"""

from __future__ import annotations

import argparse
import json
import random
import sys

import trio

stats = {"connections": 0, "chunks": 0, "bytes": 0, "lost": 0, "resets": 0}


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class Cut(Exception):
    pass


async def pump(src: trio.SocketStream, dst: trio.SocketStream, opts: argparse.Namespace) -> None:
    send, recv = trio.open_memory_channel[tuple[float, bytes]](1000)
    rng = random.Random()

    async def reader() -> None:
        last = 0.0
        async with send:
            while True:
                data = await src.receive_some(65536)
                if not data:
                    return
                stats["chunks"] += 1
                stats["bytes"] += len(data)
                if opts.reset and rng.random() < opts.reset:
                    stats["resets"] += 1
                    raise Cut
                hold = rng.uniform(0, opts.jitter)
                if opts.loss and rng.random() < opts.loss:
                    stats["lost"] += 1
                    hold += opts.rto
                last = max(last, trio.current_time() + hold)
                await send.send((last, data))

    async def writer() -> None:
        async with recv:
            async for at, data in recv:
                await trio.sleep_until(at)
                await dst.send_all(data)
        await dst.send_eof()

    async with trio.open_nursery() as n:
        n.start_soon(reader)
        n.start_soon(writer)


async def handle(client: trio.SocketStream, opts: argparse.Namespace) -> None:
    stats["connections"] += 1
    host, port = _hostport(opts.to)
    try:
        with trio.fail_after(5):
            upstream = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError):
        await client.aclose()
        return
    try:
        async with trio.open_nursery() as n:
            n.start_soon(pump, client, upstream, opts)
            n.start_soon(pump, upstream, client, opts)
    except (Cut, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    except BaseExceptionGroup as group:
        rest = group.split((Cut, trio.BrokenResourceError, trio.ClosedResourceError, OSError))[1]
        if rest is not None:
            raise rest from None
    finally:
        for s in (client, upstream):
            await trio.aclose_forcefully(s)


async def main(opts: argparse.Namespace) -> None:
    host, port = _hostport(opts.listen)
    listeners = await trio.open_tcp_listeners(port, host=host)

    async def write_stats() -> None:
        while True:
            if opts.stats:
                await trio.Path(opts.stats).write_text(json.dumps(stats))
            await trio.sleep(1)

    async with trio.open_nursery() as n:
        n.start_soon(write_stats)
        await n.start(trio.serve_listeners, lambda s: handle(s, opts), listeners)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--jitter", type=float, default=0.0)
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--rto", type=float, default=0.2)
    p.add_argument("--reset", type=float, default=0.0)
    p.add_argument("--stats")
    return p.parse_args(argv)


if __name__ == "__main__":
    trio.run(main, parse(sys.argv[1:]))
