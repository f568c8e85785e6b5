"""AlgedonicBroadcast on the simulated network, under MockClock, at exact virtual times.

The simulated network cuts streams and datagrams together (``SimNetwork.cut``)
and drops only datagrams (``loss``); it cannot cut TCP alone. ``TcpFaults``
below wraps each host's transport to hold stream bytes (as TCP does across a
cut) while datagrams pass, and to stall only the connections open now.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
from vsmtest import config, full_mesh, wait_for

from node.core.algedonic import (
    CONNECTION,
    DATAGRAM,
    FRESH,
    IMMEDIATE,
    Signal,
    check_signal,
    seal,
)
from node.core.events import Channel, Event
from node.core.hlc import Timestamp
from node.node import Node, open_node
from node.sim import SimNetwork

pytestmark = pytest.mark.trio

PAIN = {"type": "pain", "severity": 9, "source": "deployment_test", "data": {"step": 3}}
QUIET = {"heartbeat_interval_s": 1.0}


class TcpFaults:
    """Stream-only faults shared by every host's wrapped transport."""

    def __init__(self) -> None:
        self.cut: set[frozenset[str]] = set()
        self.stalled: set[_Stream] = set()
        self.streams: list[_Stream] = []
        self.changed = trio.Event()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def cut_tcp(self, a: str, b: str) -> None:
        """Hold stream bytes both ways between a and b; new connects wait too."""
        self.cut.add(frozenset((a, b)))
        self._changed()

    def stall_open(self, a: str, b: str) -> None:
        """Hold bytes on the streams open now between a and b; new ones flow."""
        for s in self.streams:
            if {s.host, s.remote} == {a, b}:
                self.stalled.add(s)
        self._changed()

    def heal(self) -> None:
        self.cut.clear()
        self.stalled.clear()
        self._changed()

    def blocked(self, stream: _Stream) -> bool:
        return stream in self.stalled or frozenset((stream.host, stream.remote)) in self.cut

    def transport(self, net: SimNetwork, host: str) -> _Transport:
        return _Transport(self, net.transport(host), host)


class _Stream(trio.abc.Stream):
    def __init__(self, faults: TcpFaults, inner: Any, host: str, remote: str) -> None:
        self.faults, self.inner, self.host, self.remote = faults, inner, host, remote
        faults.streams.append(self)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        while self.faults.blocked(self):
            await self.faults.changed.wait()
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self.inner.receive_some(max_bytes)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Listener(trio.abc.Listener[_Stream]):
    def __init__(self, faults: TcpFaults, inner: Any, host: str) -> None:
        self.faults, self.inner, self.host = faults, inner, host

    async def accept(self) -> _Stream:
        stream = await self.inner.accept()
        return _Stream(self.faults, stream, self.host, stream.remote_address.split(":")[0])

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Transport:
    def __init__(self, faults: TcpFaults, inner: Any, host: str) -> None:
        self.faults, self.inner, self.host = faults, inner, host

    async def listen(self, address: str) -> tuple[_Listener, str]:
        listener, bound = await self.inner.listen(address)
        return _Listener(self.faults, listener, self.host), bound

    async def connect(self, address: str) -> _Stream:
        remote = address.split(":")[0]
        while frozenset((self.host, remote)) in self.faults.cut:
            await self.faults.changed.wait()
        return _Stream(self.faults, await self.inner.connect(address), self.host, remote)

    async def open_datagram(self, port: int) -> Any:
        return await self.inner.open_datagram(port)


@asynccontextmanager
async def nodes_on(
    net: SimNetwork,
    names: list[str],
    faults: TcpFaults | None = None,
    *,
    udp: bool = True,
    **kw: Any,
) -> AsyncIterator[dict[str, Node]]:
    faults = faults or TcpFaults()
    async with AsyncExitStack() as stack:
        out: dict[str, Node] = {}
        for name in names:
            seeds = [] if name == names[0] else [f"{names[0]}:7401"]
            cfg = config(name, seeds=seeds, **{**QUIET, **kw})
            out[name] = await stack.enter_async_context(
                open_node(cfg, transport=faults.transport(net, name))
            )
        await wait_for(lambda: full_mesh(out))
        if udp:
            await wait_for(
                lambda: all(n.algedonic.datagrams.status == "open" for n in out.values())
            )
        yield out


def record(node: Node) -> dict[str, list[Any]]:
    """What reached S5, the type's subscribers and the channel's subscribers."""
    seen: dict[str, list[Any]] = {"s5": [], "type": [], "channel": []}
    node.algedonic.s5_handlers.append(seen["s5"].append)
    node.subscribe("algedonic_pain", seen["type"].append)
    node.subscribe(Channel.ALGEDONIC, seen["channel"].append)
    return seen


async def test_every_member_confirms_and_each_delivers_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork()
    names = ["a", "b", "c", "d"]
    with trio.fail_after(60):
        async with nodes_on(net, names) as nodes:
            for other in names[1:]:
                net.delay("a", other, 0.001)
            seen = {n: record(node) for n, node in nodes.items()}
            telemetry: list[tuple[tuple[str, ...], Any, Any]] = []
            nodes["a"].algedonic.telemetry.append(lambda *e: telemetry.append(e))
            start = trio.current_time()
            result = await nodes["a"].algedonic_scream(PAIN)
            assert trio.current_time() - start == pytest.approx(0.002, abs=1e-9)
            assert result["confirmed"] == ["b", "c", "d"] and result["failed"] == []
            assert result["directive"] == IMMEDIATE
            assert result["latency_ms"] == pytest.approx(2.0)  # one round trip of 1 ms links
            assert result["attempts"] == {"b": 1, "c": 1, "d": 1}
            await trio.sleep(1)  # every copy on every path has arrived by now
            for name in names:
                for where, got in seen[name].items():
                    assert len(got) == 1, (name, where)
                event = seen[name]["type"][0]
                assert isinstance(event, Event) and event.data["signal_id"] == result["id"]
                assert event.data["data"] == {"step": 3} and event.source == "a"
                assert isinstance(seen[name]["s5"][0], Signal)
            for name in names[1:]:
                st = nodes[name].health_report()["algedonic"]
                assert st["received"] == 1
                assert st["copies_in"][CONNECTION] == 1 and st["copies_in"][DATAGRAM] == 1
                assert st["duplicates"] == 1  # the second path's copy, acked, not delivered
                last = st["last_received"][-1]
                assert last["id"] == result["id"] and last["origin"] == "a"
                assert last["severity"] == 9 and last["path"] in (CONNECTION, DATAGRAM)
            st = nodes["a"].variety_stats()["algedonic"]
            assert (st["sent"], st["confirmations"], st["failures"]) == (1, 3, 0)
            assert st["acks_in"][CONNECTION] == 3 and st["acks_in"][DATAGRAM] == 3
            assert st["latency_ms"]["p99"] == pytest.approx(2.0)
            assert st["last"][-1]["confirmed"] == ["b", "c", "d"]
            names_emitted = [e[0] for e in telemetry]
            confirmation = ("vsm", "cluster", "algedonic", "confirmation")
            assert names_emitted.count(confirmation) == 3
            assert names_emitted[-1] == ("vsm", "cluster", "algedonic", "broadcast_latency")
            assert telemetry[-1][1] == {"latency_ms": pytest.approx(2.0)}
            assert {e[2]["node"] for e in telemetry[:3]} == {"b", "c", "d"}


async def test_a_peer_with_tcp_cut_confirms_over_udp(autojump_clock: trio.abc.Clock) -> None:
    net, faults = SimNetwork(), TcpFaults()
    with trio.fail_after(60):
        async with nodes_on(net, ["a", "b", "c"], faults) as nodes:
            net.delay("a", "b", 0.001)
            net.delay("a", "c", 0.001)
            seen = record(nodes["b"])
            faults.cut_tcp("a", "b")
            result = await nodes["a"].algedonic_scream(PAIN)
            assert result["confirmed"] == ["b", "c"] and result["failed"] == []
            assert result["attempts"] == {"b": 1, "c": 1}
            assert result["latency_ms"] == pytest.approx(2.0)
            st_b = nodes["b"].algedonic.stats()
            assert st_b["copies_in"] == {CONNECTION: 0, DATAGRAM: 1, FRESH: 0}
            assert nodes["a"].algedonic.stats()["acks_in"][DATAGRAM] == 2  # b's and c's
            faults.heal()
            # the held copy arrives over the connection: acked, not delivered again
            await wait_for(lambda: nodes["b"].algedonic.stats()["copies_in"][CONNECTION] == 1)
            assert len(seen["s5"]) == len(seen["type"]) == len(seen["channel"]) == 1
            assert nodes["b"].algedonic.stats()["duplicates"] == 1


async def test_a_dead_peer_fails_after_exactly_three_retries(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork()
    with trio.fail_after(60):
        async with nodes_on(net, ["a", "b", "c"]) as nodes:
            a = nodes["a"]
            sends: list[tuple[str, int, float]] = []
            real_send = a.algedonic._send_all

            def spy(nursery: Any, broadcast: Any, message: Any, names: Any, attempt: int) -> None:
                names = list(names)
                sends.extend((name, attempt, trio.current_time()) for name in names)
                real_send(nursery, broadcast, message, names, attempt)

            a.algedonic._send_all = spy  # type: ignore[method-assign]
            net.cut("a", "c")  # c is down as far as a can tell: no stream, no datagram
            start = trio.current_time()
            result = await a.algedonic_scream(PAIN)
            took = trio.current_time() - start
            assert result["confirmed"] == ["b"] and result["failed"] == ["c"]
            assert result["attempts"] == {"b": 1, "c": 4}
            assert took == pytest.approx(0.375, abs=1e-9)
            times = [(n, at, round(t - start, 9)) for n, at, t in sends if n == "c"]
            assert times == [("c", 1, 0.0), ("c", 2, 0.025), ("c", 3, 0.075), ("c", 4, 0.175)]
            st = a.algedonic.stats()
            assert st["failures_by_node"] == {"c": 1} and st["counters"]["retries"] == 3
            # one fresh connection was tried (and never got through), not one per retry
            assert st["counters"]["fresh_connections"] == 1
            assert st["latency_ms"]["samples"] == 0
            assert a.health_report()["algedonic"]["last"][-1]["failed"] == ["c"]


async def test_a_stalled_connection_and_lost_datagrams_confirm_over_a_fresh_connection(
    autojump_clock: trio.abc.Clock,
) -> None:
    net, faults = SimNetwork(), TcpFaults()
    with trio.fail_after(60):
        async with nodes_on(net, ["a", "b"], faults) as nodes:
            seen = record(nodes["b"])
            faults.stall_open("a", "b")  # the session is stuck; a new connection would flow
            net.loss("a", "b", 1.0)  # and no datagram arrives
            result = await nodes["a"].algedonic_scream(PAIN)
            assert result["confirmed"] == ["b"] and result["attempts"] == {"b": 2}
            assert result["latency_ms"] == pytest.approx(25.0)  # the first retry's fresh connection
            assert nodes["a"].algedonic.stats()["acks_in"][FRESH] == 1
            b = nodes["b"]
            assert b.algedonic.stats()["copies_in"][FRESH] == 1
            assert b.bridge.counters["signal_connections"] == 1
            # the session survived: the signal connection did not replace it
            assert b.bridge.peers["a"].connected and b.bridge.peers["a"].connects == 1
            assert len(seen["s5"]) == 1


async def test_copies_on_every_path_are_handled_once_and_each_acked_on_its_path(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork()
    with trio.fail_after(60):
        async with nodes_on(net, ["a", "b"]) as nodes:
            a, b = nodes["a"], nodes["b"]
            seen = record(b)
            signal = Signal.make(
                "a-manual",
                check_signal(PAIN),
                "a",
                a.hlc.now(),
            )
            msg = signal.to_message()
            for _ in range(2):
                assert a.bridge.send_control("b", msg)
                await a.algedonic.datagrams.send(msg, b.address)
                await a.algedonic._fresh_connection("b", b.address, msg)
            await trio.sleep(0.1)
            assert len(seen["s5"]) == len(seen["type"]) == len(seen["channel"]) == 1
            st_b = b.algedonic.stats()
            assert st_b["copies_in"] == {CONNECTION: 2, DATAGRAM: 2, FRESH: 2}
            assert (st_b["received"], st_b["duplicates"]) == (1, 5)
            # every copy was acked on the path it came by (no broadcast open: unmatched)
            st_a = a.algedonic.stats()
            assert st_a["acks_in"] == {CONNECTION: 2, DATAGRAM: 2, FRESH: 2}
            assert st_a["counters"]["acks_unmatched"] == 6


async def test_a_scream_behind_a_full_s1_lane_goes_out_first(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork(send_buffer=8 * 1024)
    with trio.fail_after(60):
        async with nodes_on(net, ["a", "b"], quotas={"s1_operational": None}) as nodes:
            a, b = nodes["a"], nodes["b"]
            net.delay("a", "b", 0.001)
            net.loss("a", "b", 1.0)  # no datagrams: only the connection can confirm
            order: list[str] = []
            b.subscribe("task_execution", lambda e: order.append("s1"))
            b.subscribe("algedonic_pain", lambda e: order.append("scream"))
            total = 3000
            for i in range(total):
                a.publish("task_execution", {"task": i, "pad": "x" * 40})
            await trio.sleep(0.0005)  # the writer has filled the link and waits on it
            assert a.bridge.peers["b"].outbox.pending > total // 2  # the lane is full
            result = await a.algedonic_scream(PAIN)
            assert result["confirmed"] == ["b"] and result["attempts"] == {"b": 1}
            assert result["latency_ms"] < 5
            assert a.algedonic.stats()["acks_in"][CONNECTION] == 1
            await wait_for(lambda: len(order) == total + 1)
            ahead = order.index("scream")
            assert ahead < total // 10, f"{ahead} S1 events went before the scream"


async def test_forged_unsigned_replayed_and_stale_datagrams_are_ignored_and_counted(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork()
    with trio.fail_after(60):
        async with nodes_on(net, ["a", "b"]) as nodes:
            a, b = nodes["a"], nodes["b"]
            seen = record(b)
            sock = await net.transport("x").open_datagram(0)  # an outsider on the network
            to = ("b", 7401)
            signal = Signal.make("a-1", check_signal(PAIN), "a", a.hlc.now())

            def signed(cookie: str = "test-cookie-1234", *, nonce: bytes, hlc: Any = None) -> bytes:
                return seal(
                    signal.to_message(),
                    cookie=cookie,
                    cluster="vsm",
                    sender="a",
                    hlc=hlc or a.hlc.now(),
                    nonce=nonce,
                )

            good = signed(nonce=b"1" * 16)
            await sock.sendto(good, to)
            await sock.sendto(good, to)  # replayed
            await sock.sendto(b"pain!", to)  # unsigned
            await sock.sendto(signed("wrong-cookie-999", nonce=b"2" * 16), to)  # forged
            old = Timestamp(a.hlc.now().physical - 31_000, 0, "a")
            await sock.sendto(signed(nonce=b"3" * 16, hlc=old), to)  # stale
            await trio.sleep(0.01)
            c = b.algedonic.stats()["counters"]
            assert c["datagrams_replayed"] == 1
            assert c["datagrams_unsigned"] == 1
            assert c["datagrams_forged"] == 1
            assert c["datagrams_stale"] == 1
            assert len(seen["s5"]) == 1  # only the good one, once
            assert b.algedonic.stats()["copies_in"][DATAGRAM] == 1
            # the ack went back to where the datagram came from, signed by b
            ack, _ = await sock.recvfrom(65536)
            assert len(ack) > 32
            with trio.move_on_after(0.01):
                await sock.recvfrom(65536)
                pytest.fail("an ignored datagram was acked")
            assert b.bridge.peers["a"].connected  # nothing of this hurt the node


async def test_validation_errors_name_the_field_and_a_lone_node_confirms_to_itself(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork()
    with trio.fail_after(10):
        async with open_node(config("a"), transport=net.transport("a")) as a:
            with pytest.raises(ValueError, match="severity"):
                await a.algedonic_scream({**PAIN, "severity": 0})
            with pytest.raises(ValueError, match="type"):
                await a.algedonic_scream({**PAIN, "type": "meh"})
            got: list[Event] = []
            a.subscribe(Channel.ALGEDONIC, got.append)
            result = await a.algedonic_scream({"type": "pleasure", "severity": 8, "source": "ops"})
            assert result["directive"] == "maintain_current_state"
            assert result["confirmed"] == result["failed"] == [] and result["attempts"] == {}
            assert result["latency_ms"] is None
            assert [e.type for e in got] == ["algedonic_pleasure"]
            assert a.algedonic.stats()["sent"] == 1


async def test_partition_alarm_is_a_scream_to_reachable_members(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork()
    with trio.fail_after(60):
        async with nodes_on(net, ["a", "b", "c"]) as nodes:
            seen_b = record(nodes["b"])
            seen_c = record(nodes["c"])
            net.cut("a", "c")
            await wait_for(lambda: not nodes["a"].bridge.peers["c"].connected)
            assert nodes["a"].algedonic.partition_alarm(
                "algedonic_pain", {"reason": "partition awaiting operator", "detail": "x"}
            )
            await wait_for(lambda: nodes["a"].algedonic.stats()["last"] != [])
            last = nodes["a"].algedonic.stats()["last"][-1]
            assert last["source"] == "partition_detector" and last["severity"] == 8
            assert last["confirmed"] == ["b"] and last["failed"] == []  # c is not reachable
            assert seen_b["type"][0].data["data"]["reason"] == "partition awaiting operator"
            assert seen_c["s5"] == []


async def test_supervised_between_variety_and_bridge_and_survives_bad_callbacks(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = SimNetwork()
    with trio.fail_after(60):
        async with nodes_on(net, ["a", "b"]) as nodes:
            a = nodes["a"]
            order = list(a.supervisor.status())
            assert order.index("variety") < order.index("algedonic") < order.index("bridge")
            assert order.index("bridge") < order.index("algedonic_datagrams")

            def broken(*_: Any) -> None:
                raise RuntimeError("boom")

            for node in nodes.values():
                node.algedonic.s5_handlers.insert(0, broken)
            a.algedonic.telemetry.append(broken)
            seen = record(nodes["b"])
            result = await a.algedonic_scream(PAIN)
            assert result["confirmed"] == ["b"]
            assert len(seen["s5"]) == len(seen["type"]) == 1  # later handlers still ran
            assert a.algedonic.stats()["counters"]["s5_handler_errors"] == 1
            assert a.algedonic.stats()["counters"]["telemetry_errors"] == 2
            assert nodes["b"].algedonic.stats()["counters"]["s5_handler_errors"] == 1
            assert a.supervisor.status()["algedonic"] == "running"


async def test_datagrams_go_to_the_algedonic_port_each_peer_advertised(
    autojump_clock: trio.abc.Clock,
) -> None:
    net, faults = SimNetwork(), TcpFaults()
    with trio.fail_after(60):
        async with nodes_on(net, ["a", "b", "c"], faults, algedonic_port=7501) as nodes:
            a, b = nodes["a"], nodes["b"]
            assert b.address == "b:7401" and b.bridge.algedonic_port == 7501
            assert b.algedonic.stats()["datagram"]["address"] == "b:7501"
            assert a.algedonic.stats()["datagram"]["peer_ports"] == {"b": 7501, "c": 7501}
            intruder = await net.transport("b").open_datagram(7401)  # the TCP port's number
            faults.cut_tcp("a", "b")
            result = await a.algedonic_scream(PAIN)
            assert result["confirmed"] == ["b", "c"] and result["attempts"] == {"b": 1, "c": 1}
            assert b.algedonic.stats()["copies_in"][DATAGRAM] == 1
            assert a.algedonic.stats()["acks_in"][DATAGRAM] == 2
            with trio.move_on_after(0.1):
                await intruder.recvfrom(65536)
                pytest.fail("a datagram went to the TCP port's number")


async def test_a_peer_that_advertised_no_algedonic_port_gets_no_datagrams(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    net = SimNetwork()
    squatter = await net.transport("b").open_datagram(7501)  # b cannot bind its port
    with trio.fail_after(60), caplog.at_level(logging.WARNING, logger="vsm.algedonic"):
        async with nodes_on(net, ["a", "b", "c"], udp=False, algedonic_port=7501) as nodes:
            a, b = nodes["a"], nodes["b"]
            await wait_for(lambda: a.algedonic.datagrams.status == "open")
            assert b.algedonic.datagrams.status.startswith("unavailable")
            assert b.bridge.algedonic_port == 0  # what its HELLO said
            assert b.algedonic.stats()["counters"]["datagram_bind_failed"] == 1
            datagram = a.algedonic.stats()["datagram"]
            assert datagram["peer_ports"] == {"b": 0, "c": 7501}
            assert datagram["peers_without_port"] == ["b"]
            for _ in range(2):
                result = await a.algedonic_scream(PAIN)
                assert result["confirmed"] == ["b", "c"] and result["attempts"] == {"b": 1, "c": 1}
            st = a.algedonic.stats()
            assert st["counters"]["datagram_skipped_no_port"] == 2
            assert st["counters"]["copies_out_datagram"] == 2  # c's, none for b
            assert st["acks_in"] == {CONNECTION: 4, DATAGRAM: 2, FRESH: 0}
            assert b.algedonic.stats()["copies_in"] == {CONNECTION: 2, DATAGRAM: 0, FRESH: 0}
            with trio.move_on_after(0.1):
                await squatter.recvfrom(65536)
                pytest.fail("a datagram went to b although it advertised no port")
    said = [r for r in caplog.records if "advertised no algedonic port" in r.getMessage()]
    assert len(said) == 1 and said[0].getMessage().startswith("b ")


async def test_an_observer_is_a_target_and_confirms_too(autojump_clock: trio.abc.Clock) -> None:
    net = SimNetwork()
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            nodes: dict[str, Node] = {}
            for name, role in (("a", "member"), ("b", "member"), ("o", "observer")):
                seeds = [] if name == "a" else ["a:7401"]
                cfg = config(name, seeds=seeds, role=role, **QUIET)
                nodes[name] = await stack.enter_async_context(
                    open_node(cfg, transport=net.transport(name))
                )
            await wait_for(lambda: full_mesh(nodes))
            seen = record(nodes["o"])
            result = await nodes["a"].algedonic_scream(PAIN)
            assert result["confirmed"] == ["b", "o"] and result["failed"] == []
            assert len(seen["s5"]) == 1
            # and an observer's own scream reaches the members
            back = await nodes["o"].algedonic_scream({**PAIN, "type": "emergency"})
            assert back["confirmed"] == ["a", "b"] and back["directive"] == IMMEDIATE
