"""A receiving node that writes down the id of every event it is delivered.

    python recorder.py --name r --advertise 10.231.0.9:7401 --seeds 10.231.0.1:7401 \
        --cookie-file F --out FILE

An observer (it never votes, so quorums are those of the daemons) built with the public
API (``open_node`` + ``subscribe("*")``). It touches FILE.ready once started; on SIGTERM
it writes FILE (JSON): per source, how many events were delivered straight from it
(``count``) and through another node (``relayed``), not counting alarms and its own
events (``algedonic_or_own``: they do not travel the event links), how many ids
``(source, hlc)`` came twice, and the ``data["i"]`` of each event that carries one.
That is what the fault suite compares with what the senders published.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

import trio

from node.config import NodeConfig
from node.core.events import Channel, Event
from node.node import open_node


async def main(opts: argparse.Namespace, cookie: str) -> None:
    cfg = NodeConfig(
        name=opts.name,
        cluster="ft",
        listen="0.0.0.0:7401",
        advertise=opts.advertise,
        seeds=[opts.seeds],
        cookie=cookie,
        role="observer",
        heartbeat_interval_s=0.5,
        check_interval_s=0.5,
        stable_after_s=2.0,
        reconnect_base_s=0.1,
        reconnect_max_s=1.0,
        connect_timeout_s=2.0,
    )
    seen: set[tuple[str, Any]] = set()
    count: dict[str, int] = {}
    relayed: dict[str, int] = {}
    other: dict[str, int] = {}
    dupes: dict[str, int] = {}
    marks: dict[str, list[Any]] = {}

    def on(event: Event) -> None:
        src = event.source
        if event.channel is Channel.ALGEDONIC or src == opts.name:
            # alarms travel their own path (not the event links), own events none
            other[src] = other.get(src, 0) + 1
            return
        if event.id in seen:
            dupes[src] = dupes.get(src, 0) + 1
            return
        seen.add(event.id)
        if event.hops:  # came through another node, not from its source
            relayed[src] = relayed.get(src, 0) + 1
        else:
            count[src] = count.get(src, 0) + 1
        if not event.compressed and isinstance(event.data, dict) and "i" in event.data:
            marks.setdefault(src, []).append(event.data["i"])

    out = Path(opts.out)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_node(cfg) as node:
            node.subscribe("*", on)
            await trio.Path(str(out) + ".ready").write_text("1")
            async for _ in signals:
                break
            result = {
                "count": count,
                "relayed": relayed,
                "algedonic_or_own": other,
                "dupes": dupes,
                "marks": marks,
                "events_in": {p: st["events_in"] for p, st in node.bridge.peer_states().items()},
            }
            await trio.Path(out).write_text(json.dumps(result))


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--name", "--advertise", "--seeds", "--cookie-file", "--out"):
        p.add_argument(flag, required=True)
    return p.parse_args(argv)


if __name__ == "__main__":
    options = parse(sys.argv[1:])
    trio.run(main, options, Path(options.cookie_file).read_text().strip())
