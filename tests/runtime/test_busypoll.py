"""BusyPoll: the window adapts to the gaps between I/Os, the spin ends, and only
real connections poke it."""

from __future__ import annotations

import socket

import pytest
import trio

from node.core.wire import Bye
from node.runtime.busypoll import MAX_TURNS, BusyPoll, YieldWhenBusy, yielding_when_busy
from node.runtime.peer import FramedStream
from node.sim import SimNetwork

US = 1e-6


class FakeClock:
    """Seconds that move only when told (``step`` per read, for the spin loop)."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_io_within_the_ceiling_keeps_the_window_open() -> None:
    clock = FakeClock()
    busy = BusyPoll(200 * US, clock=clock)
    busy.poke()  # the first I/O, after silence: counts as a long gap (window 100 µs)
    for gap in (50, 150, 199):
        clock.now += gap * US
        busy.poke()
        assert busy.window == pytest.approx(200 * US)


def test_long_gaps_halve_the_window_and_close_it_then_a_short_one_reopens_it() -> None:
    clock = FakeClock()
    busy = BusyPoll(200 * US, clock=clock)
    busy.poke()  # after silence: 100
    windows = []
    for _ in range(5):
        clock.now += 1.0  # a heartbeat a second apart: a spin would have been wasted
        busy.poke()
        windows.append(round(busy.window / US))
    # 50, 25 (= the floor, an eighth of 200), then closed for good
    assert windows == [50, 25, 0, 0, 0]
    clock.now += 80 * US  # two I/Os close together: spinning pays again
    busy.poke()
    assert busy.window == pytest.approx(200 * US)


def test_a_ceiling_of_zero_is_off_and_a_negative_one_is_refused() -> None:
    busy = BusyPoll(0.0)
    assert not busy.enabled
    busy.poke()
    busy.poke()
    assert busy.window == 0
    with pytest.raises(ValueError, match="busy poll"):
        BusyPoll(-1.0)


@pytest.mark.trio
async def test_the_spin_lasts_its_window_then_sleeps_until_the_next_io() -> None:
    clock = FakeClock(step=10 * US)  # each read of the clock is 10 µs later
    busy = BusyPoll(200 * US, clock=clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(busy.run)
        await trio.testing.wait_all_tasks_blocked()
        assert busy.spins == 0  # no I/O yet: asleep, not spinning
        busy.poke()
        busy.poke()  # a gap of one clock step: well within the ceiling
        await trio.testing.wait_all_tasks_blocked()
        assert busy.spins == 1
        # 200 µs of window at 10 µs per clock read: about 20 turns, then asleep
        assert 5 <= busy.turns <= 25
        assert busy.open_s == pytest.approx(busy.turns * 10 * US, abs=30 * US)
        turns = busy.turns
        await trio.testing.wait_all_tasks_blocked()
        assert busy.turns == turns  # it stays asleep
        busy.poke()
        await trio.testing.wait_all_tasks_blocked()
        assert busy.spins == 2
        nursery.cancel_scope.cancel()
    assert busy.stats()["ceiling_us"] == 200 and busy.stats()["spins"] == 2


@pytest.mark.trio
async def test_a_stopped_clock_cannot_make_it_spin_forever() -> None:
    busy = BusyPoll(200 * US, clock=FakeClock(step=0.0))  # time never passes
    async with trio.open_nursery() as nursery:
        await nursery.start(busy.run)
        busy.poke()
        busy.poke()
        await trio.testing.wait_all_tasks_blocked()
        assert busy.turns == MAX_TURNS
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_real_sockets_poke_on_read_and_write_and_simulated_streams_do_not() -> None:
    pokes: list[str] = []
    left, right = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a = FramedStream(
        trio.SocketStream(left), max_frame=1 << 16, max_hops=4, on_io=lambda: pokes.append("a")
    )
    b = FramedStream(
        trio.SocketStream(right), max_frame=1 << 16, max_hops=4, on_io=lambda: pokes.append("b")
    )
    with trio.fail_after(5):
        await a.send(Bye("a", "hello"))
        assert pokes == ["a"]
        msg = await b.receive()
        assert isinstance(msg, Bye) and pokes == ["a", "b"]
    await a.aclose()
    await b.aclose()

    net = SimNetwork()
    listener, addr = await net.transport("y").listen("y:1")
    client = await net.transport("x").connect(addr)
    server = await listener.accept()
    sim = FramedStream(client, max_frame=1 << 16, max_hops=4, on_io=lambda: pokes.append("sim"))
    peer = FramedStream(server, max_frame=1 << 16, max_hops=4)
    with trio.fail_after(5):
        await sim.send(Bye("x", "hi"))
        assert isinstance(await peer.receive(), Bye)
    assert "sim" not in pokes


def test_a_busy_loop_yields_the_cpu_at_most_once_per_interval() -> None:
    clock = FakeClock()
    courtesy = YieldWhenBusy(interval_s=450 * US, clock=clock)
    for _ in range(100):  # 100 batches with tasks still runnable, 100 µs apart
        clock.now += 100 * US
        courtesy.before_io_wait(0)
    assert courtesy.yields == 20  # 10 ms of busy loop: one yield per 5 batches (500 µs)
    for _ in range(100):  # batches about to wait for I/O: the CPU is offered anyway
        clock.now += 1.0
        courtesy.before_io_wait(0.25)
    assert courtesy.yields == 20


@pytest.mark.trio
async def test_a_node_offers_the_cpu_while_its_loop_is_busy() -> None:
    from vsmtest import FAST_TCP

    from node.config import NodeConfig
    from node.node import open_node

    counted: list[YieldWhenBusy] = []
    original = YieldWhenBusy.__init__

    def spy(self: YieldWhenBusy, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        counted.append(self)

    cfg = NodeConfig(name="a", listen="127.0.0.1:0", cookie="k" * 16, **FAST_TCP)
    with pytest.MonkeyPatch.context() as patch, trio.fail_after(20):
        patch.setattr(YieldWhenBusy, "__init__", spy)
        async with open_node(cfg) as node:
            deadline = trio.current_time() + 0.05
            while trio.current_time() < deadline:  # a producer that never waits
                for i in range(100):
                    node.publish("task_execution", {"i": i})
                await trio.lowlevel.checkpoint()
    assert len(counted) == 1 and counted[0].yields >= 10


@pytest.mark.trio
async def test_nodes_in_one_run_share_one_instrument_removed_with_the_last() -> None:
    from node.runtime import busypoll

    with yielding_when_busy() as first:
        with yielding_when_busy() as second:
            assert first is second
            assert busypoll._SHARED.get()[1] == 2
        assert busypoll._SHARED.get()[1] == 1
    assert busypoll._SHARED.get()[1] == 0
    # removed: trio refuses to remove an instrument that is not installed
    with pytest.raises(KeyError):
        trio.lowlevel.remove_instrument(first)
