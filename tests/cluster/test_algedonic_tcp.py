"""Algedonic broadcast for real: three nodes over TCP and UDP on 127.0.0.1 (real clock)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
from vsmtest import FAST_TCP, meshed, until

from node.config import NodeConfig, parse_address
from node.core.algedonic import (
    CONNECTION,
    DATAGRAM,
    FRESH,
    AlgedonicSettings,
    Signal,
    check_signal,
    seal,
)
from node.core.events import Channel, Event
from node.core.wire import Algedonic
from node.node import Node, open_node
from node.runtime import datagrams as datagrams_runtime

pytestmark = pytest.mark.trio

COOKIE = "algedonic-cookie-1"
FAST = FAST_TCP
PAIN = {"type": "pain", "severity": 6, "source": "tcp_test", "data": {"disk": "full"}}


@asynccontextmanager
async def three(**kw: Any) -> AsyncIterator[list[Node]]:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_node(NodeConfig(name="a", listen="127.0.0.1:0", cookie=COOKIE, **FAST, **kw))
        )
        nodes = [a]
        for name in ("b", "c"):
            cfg = NodeConfig(
                name=name, listen="127.0.0.1:0", seeds=[a.address], cookie=COOKIE, **FAST, **kw
            )
            nodes.append(await stack.enter_async_context(open_node(cfg)))
        await until(lambda: meshed(nodes))
        await until(lambda: all(n.algedonic.datagrams.status == "open" for n in nodes))
        yield nodes


async def test_three_nodes_confirm_over_tcp_and_udp() -> None:
    with trio.fail_after(30):
        async with three() as nodes:
            a, b, c = nodes
            for n in nodes:
                # UDP on the number of the TCP port, on the same host
                assert n.algedonic.stats()["datagram"]["address"] == n.address
            got: dict[str, list[Event]] = {n.name: [] for n in nodes}
            for n in nodes:
                n.subscribe(Channel.ALGEDONIC, got[n.name].append)
            result = await a.algedonic_scream(PAIN)
            assert result["confirmed"] == ["b", "c"] and result["failed"] == []
            assert result["directive"] == "policy_review_required"
            assert result["latency_ms"] is not None and result["latency_ms"] < 1000
            # the other path's copy arrives too; both are counted, one delivered
            await until(
                lambda: all(sum(n.algedonic.stats()["copies_in"].values()) >= 2 for n in (b, c))
            )
            for n in (b, c):
                st = n.algedonic.stats()
                assert st["copies_in"][CONNECTION] == 1 and st["copies_in"][DATAGRAM] == 1
                assert st["received"] == 1 and st["duplicates"] == 1
            for n in nodes:
                assert [e.data["signal_id"] for e in got[n.name]] == [result["id"]]
            # and back the other way, from c
            back = await c.algedonic_scream({"type": "emergency", "severity": 1, "source": "x"})
            assert back["confirmed"] == ["a", "b"]


async def test_a_fresh_signal_connection_is_served_beside_the_session() -> None:
    with trio.fail_after(30):
        async with three() as nodes:
            a, b, _ = nodes
            msg = Signal.make("a-fresh", check_signal(PAIN), "a", a.hlc.now()).to_message()
            await a.algedonic._fresh_connection("b", b.address, msg)
            assert b.algedonic.stats()["copies_in"][FRESH] == 1
            assert a.algedonic.stats()["acks_in"][FRESH] == 1
            assert b.bridge.counters["signal_connections"] == 1
            assert b.bridge.counters.get("duplicate_connection", 0) == 0
            assert b.bridge.peers["a"].connected and b.bridge.peers["a"].connects == 1


async def test_real_udp_forgeries_are_counted_and_a_signed_one_is_acked() -> None:
    with trio.fail_after(30):
        async with three() as nodes:
            a, b, _ = nodes
            host, port = parse_address(b.address)
            msg = Signal.make("a-udp", check_signal(PAIN), "a", a.hlc.now()).to_message()
            with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                await sock.bind(("127.0.0.1", 0))
                await sock.sendto(b"\x00" * 40, (host, port))
                args: dict[str, Any] = dict(cluster="vsm", sender="a", hlc=a.hlc.now())
                await sock.sendto(seal(msg, cookie="wrong-cookie", nonce=b"1" * 16, **args),
                                  (host, port))  # fmt: skip
                good = seal(msg, cookie=COOKIE, nonce=b"2" * 16, **args)
                await sock.sendto(good, (host, port))
                ack, _ = await sock.recvfrom(65536)
                assert len(ack) > 32
                await sock.sendto(good, (host, port))  # replayed
                await until(lambda: b.algedonic.stats()["counters"].get("datagrams_replayed"))
            c = b.algedonic.stats()["counters"]
            assert c["datagrams_forged"] == 2 and c["datagrams_replayed"] == 1
            assert b.algedonic.stats()["received"] == 1


async def test_datagrams_reach_an_algedonic_port_apart_from_the_tcp_port() -> None:
    with trio.fail_after(30):
        async with three(algedonic_port=0) as nodes:  # UDP on a free port of its own
            a, b, c = nodes
            for n in nodes:
                host, tcp = parse_address(n.address)
                udp = n.bridge.algedonic_port
                assert udp not in (0, tcp)
                assert n.algedonic.stats()["datagram"]["address"] == f"{host}:{udp}"
            assert a.algedonic.stats()["datagram"]["peer_ports"] == {
                "b": b.bridge.algedonic_port,
                "c": c.bridge.algedonic_port,
            }
            # cut the connection path: a's signals go out by datagram only
            # (a fresh connection only comes with the first retry)
            send_control = a.bridge.send_control

            def no_signals(name: str, message: Any) -> bool:
                return False if isinstance(message, Algedonic) else send_control(name, message)

            a.bridge.send_control = no_signals  # type: ignore[method-assign]
            # a first deadline a loaded machine cannot miss: no retry, no fresh connection
            slow = AlgedonicSettings(ack_timeout_s=2.0)
            a.algedonic.settings = a.algedonic.ledger.settings = slow
            result = await a.algedonic_scream(PAIN)
            assert result["confirmed"] == ["b", "c"] and result["failed"] == []
            assert result["attempts"] == {"b": 1, "c": 1}
            st = a.algedonic.stats()
            assert st["acks_in"] == {CONNECTION: 0, DATAGRAM: 2, FRESH: 0}
            for n in (b, c):
                assert n.algedonic.stats()["copies_in"] == {CONNECTION: 0, DATAGRAM: 1, FRESH: 0}


async def test_poll_handles_a_waiting_signal_in_the_calling_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reader and writers call ``poll`` between frames (the bridge's
    ``urgent``): a signal waiting on the socket is delivered and acked there,
    without the scheduler reaching the datagram task."""
    with trio.fail_after(30):
        async with three() as nodes:
            a, b, _ = nodes
            host, port = parse_address(b.address)
            got: list[Event] = []
            b.subscribe(Channel.ALGEDONIC, got.append)
            msg = Signal.make("a-poll", check_signal(PAIN), "a", a.hlc.now()).to_message()
            args: dict[str, Any] = dict(cluster="vsm", sender="a", hlc=a.hlc.now())
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                raw.bind(("127.0.0.1", 0))
                # Loopback UDP is queued at the receiver inside sendto; nothing
                # below yields, so only poll() can have handled it.
                raw.sendto(seal(msg, cookie=COOKIE, nonce=b"3" * 16, **args), (host, port))
                b.algedonic.datagrams._polled = 0.0  # the last look was long enough ago
                assert b.algedonic.datagrams.poll() == 1
                assert [e.data["signal_id"] for e in got] == ["a-poll"]
                raw.settimeout(5)
                ack, _ = raw.recvfrom(65536)  # sent from inside poll(), at once
                assert len(ack) > 32
                # A second look within POLL_INTERVAL_S does not make the system call.
                monkeypatch.setattr(datagrams_runtime, "POLL_INTERVAL_S", 60.0)
                raw.sendto(seal(msg, cookie=COOKIE, nonce=b"4" * 16, **args), (host, port))
                assert b.algedonic.datagrams.poll() == 0
            await until(lambda: b.algedonic.stats()["duplicates"] == 1)  # the datagram task's
            assert b.algedonic.stats()["received"] == 1


async def test_a_scream_is_sealed_once_for_all_its_datagrams() -> None:
    """One attempt to every target: one seal (HMAC, nonce, clock) shared by the
    datagrams, which leave before the connections' copies are queued."""
    with trio.fail_after(30):
        async with three() as nodes:
            a = nodes[0]
            order: list[str] = []
            seal_real, control_real = a.algedonic.datagrams.seal, a.bridge.send_control
            now_real = a.algedonic.datagrams.send_now

            def sealing(message: Any) -> bytes:
                order.append("seal")
                return seal_real(message)

            def datagram(message: Any, to: Any, sealed: bytes | None = None) -> bool:
                order.append("datagram" if sealed is not None else "datagram sealed here")
                return now_real(message, to, sealed)

            def control(name: str, message: Any) -> bool:
                if isinstance(message, Algedonic):
                    order.append("connection")
                return control_real(name, message)

            a.algedonic.datagrams.seal = sealing  # type: ignore[method-assign]
            a.algedonic.datagrams.send_now = datagram  # type: ignore[method-assign]
            a.bridge.send_control = control  # type: ignore[method-assign]
            # a first deadline a loaded machine cannot miss: one attempt only
            slow = AlgedonicSettings(ack_timeout_s=2.0)
            a.algedonic.settings = a.algedonic.ledger.settings = slow
            result = await a.algedonic_scream(PAIN)
            assert sorted(result["confirmed"]) == ["b", "c"]
            assert result["attempts"] == {"b": 1, "c": 1}
            assert order == ["seal", "datagram", "datagram", "connection", "connection"]


async def test_a_fault_in_poll_is_counted_and_does_not_reach_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """poll() runs in replication tasks: a bug in handling a datagram is logged
    and counted there, never raised into the reader or writer."""
    with trio.fail_after(30):
        async with three() as nodes:
            _, b, _ = nodes
            host, port = parse_address(b.address)

            def broken(data: bytes, sender: Any) -> None:
                raise RuntimeError("a bug")

            monkeypatch.setattr(b.algedonic.datagrams, "_handle", broken)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                raw.sendto(b"\x00" * 64, (host, port))
                b.algedonic.datagrams._polled = 0.0
                assert b.algedonic.datagrams.poll() == 0
            assert b.algedonic.stats()["counters"]["datagram_handler_errors"] == 1
