"""rest_for_one supervision, driven by components that crash on purpose.

Everything runs under ``autojump_clock``; ``wait_all_tasks_blocked`` lets the
supervisor settle without moving virtual time, so crash times are exact.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from node.errors import ConfigError, EscalationError
from node.runtime.supervisor import Component, Supervisor

pytestmark = pytest.mark.trio

TIMEOUT = 120  # virtual seconds; autojump makes this cheap


class Boom(Exception):
    """A deliberate crash."""


class Harness:
    """Builds components that log start/stop and crash when told to."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.events: list[tuple[str, str, BaseException | None]] = []
        self.started_at: dict[str, list[float]] = {}
        self._trigger: dict[str, trio.Event] = {}
        self._error: dict[str, BaseException] = {}
        # name -> how many of the next starts fail before started()
        self.fail_starts: dict[str, int] = {}
        # name -> seconds a start takes before started()
        self.start_delay: dict[str, float] = {}

    def on_event(self, kind: str, name: str, exc: BaseException | None) -> None:
        self.events.append((kind, name, exc))

    def component(self, name: str) -> Component:
        async def run(*, task_status: trio.TaskStatus[None]) -> None:
            self.log.append(f"start {name}")
            trigger = self._trigger[name] = trio.Event()
            try:
                await trio.sleep(self.start_delay.get(name, 0))
                if self.fail_starts.get(name, 0) > 0:
                    self.fail_starts[name] -= 1
                    raise Boom(f"{name} failed to start")
                self.started_at.setdefault(name, []).append(trio.current_time())
                task_status.started()
                await trigger.wait()
                raise self._error.pop(name)
            except trio.Cancelled:
                self.log.append(f"stop {name}")
                raise

        return Component(name, run)

    def crash(self, name: str, exc: BaseException | None = None) -> BaseException:
        error = exc if exc is not None else Boom(f"{name} crashed")
        self._error[name] = error
        self._trigger[name].set()
        return error

    def kinds(self) -> list[tuple[str, str]]:
        return [(kind, name) for kind, name, _ in self.events]


def make(h: Harness, names: str = "ABCD", **kwargs: object) -> Supervisor:
    return Supervisor(
        [h.component(n) for n in names],
        on_event=h.on_event,
        **kwargs,  # type: ignore[arg-type]
    )


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def test_starts_in_order_each_fully_started_before_the_next(autojump_clock: object) -> None:
    h = Harness()
    h.start_delay = {"A": 1.0, "B": 2.0, "C": 0.5}
    sup = make(h, "ABC")
    assert sup.status() == {"A": "stopped", "B": "stopped", "C": "stopped"}
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            # started() only once every component is up
            assert trio.current_time() == pytest.approx(3.5)
            assert h.started_at == {"A": [1.0], "B": [3.0], "C": [3.5]}
            assert h.log == ["start A", "start B", "start C"]
            assert sup.status() == {"A": "running", "B": "running", "C": "running"}
            nursery.cancel_scope.cancel()
    # cancelled from outside: stopped last-first
    assert h.log[3:] == ["stop C", "stop B", "stop A"]
    assert h.kinds() == [
        ("started", "A"),
        ("started", "B"),
        ("started", "C"),
        ("stopped", "C"),
        ("stopped", "B"),
        ("stopped", "A"),
    ]
    assert sup.status() == {"A": "stopped", "B": "stopped", "C": "stopped"}


async def test_rest_for_one_restarts_crashed_and_later_in_order(autojump_clock: object) -> None:
    h = Harness()
    sup = make(h, "ABCD")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            del h.log[:], h.events[:]
            error = h.crash("B")
            await settle()
            assert h.log == [
                "stop D",
                "stop C",
                "start B",
                "start C",
                "start D",
            ]
            assert h.kinds() == [
                ("crashed", "B"),
                ("stopped", "D"),
                ("stopped", "C"),
                ("restarting", "B"),
                ("started", "B"),
                ("restarting", "C"),
                ("started", "C"),
                ("restarting", "D"),
                ("started", "D"),
            ]
            assert h.events[0][2] is error
            # A, started before B, was never touched
            assert "stop A" not in h.log and h.started_at["A"] == [0.0]
            assert sup.restarts == {"A": 0, "B": 1, "C": 1, "D": 1}
            assert sup.crashes == {"A": 0, "B": 1, "C": 0, "D": 0}
            assert set(sup.status().values()) == {"running"}
            nursery.cancel_scope.cancel()


async def test_crash_of_last_component_restarts_only_it(autojump_clock: object) -> None:
    h = Harness()
    sup = make(h, "ABC")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            del h.log[:]
            h.crash("C")
            await settle()
            assert h.log == ["start C"]
            assert sup.restarts == {"A": 0, "B": 0, "C": 1}
            nursery.cancel_scope.cancel()


async def test_crash_of_first_component_restarts_all(autojump_clock: object) -> None:
    h = Harness()
    sup = make(h, "ABC")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            del h.log[:]
            h.crash("A")
            await settle()
            assert h.log == ["stop C", "stop B", "start A", "start B", "start C"]
            nursery.cancel_scope.cancel()


async def test_escalates_after_more_than_max_restarts_within_window(autojump_clock: object) -> None:
    h = Harness()
    sup = make(h, "ABC")
    errors: list[BaseException] = []
    with trio.fail_after(TIMEOUT):
        with pytest.RaisesGroup(EscalationError) as info:
            async with trio.open_nursery() as nursery:
                await nursery.start(sup.run)
                for _ in range(4):
                    await trio.sleep(1.0)
                    errors.append(h.crash("B"))
                    await settle()
    assert trio.current_time() == pytest.approx(4.0)
    error = info.value.exceptions[0]
    assert error.__cause__ is errors[-1]
    assert "'B'" in str(error) and "4 crashes within 5 s" in str(error)
    assert "max_restarts=3" in str(error)
    assert sup.restarts["B"] == 3 and sup.crashes["B"] == 4
    # after the fourth crash nothing restarts: C goes, then A, last-first
    assert h.log[-3:] == ["start C", "stop C", "stop A"]
    assert h.kinds()[-4:] == [
        ("crashed", "B"),
        ("escalated", "B"),
        ("stopped", "C"),
        ("stopped", "A"),
    ]
    assert h.events[-3][2] is errors[-1]
    assert set(sup.status().values()) == {"stopped"}


async def test_restarts_spread_over_more_than_window_do_not_escalate(
    autojump_clock: object,
) -> None:
    h = Harness()
    sup = make(h, "AB")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            for _ in range(10):
                await trio.sleep(2.0)  # at most 3 crashes in any 5 s
                h.crash("B")
                await settle()
            assert sup.restarts == {"A": 0, "B": 10}
            assert set(sup.status().values()) == {"running"}
            nursery.cancel_scope.cancel()


async def test_window_boundary_is_exact(autojump_clock: object) -> None:
    h = Harness()
    sup = make(h, "AB")
    with trio.fail_after(TIMEOUT):
        with pytest.RaisesGroup(EscalationError):
            async with trio.open_nursery() as nursery:
                await nursery.start(sup.run)
                # crashes at t = 0, 1, 2 and 5: the one at 0 is 5 s old and out
                for t in (0.0, 1.0, 2.0, 5.0):
                    await trio.sleep_until(t)
                    h.crash("B")
                    await settle()
                assert sup.restarts["B"] == 4
                # t = 5.5: crashes at 1, 2, 5, 5.5 are four within 5 s
                await trio.sleep_until(5.5)
                h.crash("B")
                await settle()
                pytest.fail("should have escalated")
    assert trio.current_time() == 5.5


async def test_restarts_are_counted_over_the_whole_supervisor(autojump_clock: object) -> None:
    # OTP semantics: two flapping components escalate together.
    h = Harness()
    sup = make(h, "ABC")
    with trio.fail_after(TIMEOUT), pytest.RaisesGroup(EscalationError) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            for name in "BCBC":
                await trio.sleep(0.5)
                h.crash(name)
                await settle()
    message = str(info.value.exceptions[0])
    assert "component 'C'" in message and "2 of them 'C'" in message


async def test_crash_during_start_is_restarted(autojump_clock: object) -> None:
    h = Harness()
    h.fail_starts = {"B": 2}
    sup = make(h, "ABC")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            assert h.log == ["start A", "start B", "start B", "start B", "start C"]
            assert sup.restarts == {"A": 0, "B": 2, "C": 0}
            assert sup.crashes == {"A": 0, "B": 2, "C": 0}
            crashes = [e for e in h.events if e[0] == "crashed"]
            assert [str(e[2]) for e in crashes] == ["B failed to start"] * 2
            assert set(sup.status().values()) == {"running"}
            nursery.cancel_scope.cancel()


async def test_component_that_never_starts_escalates(autojump_clock: object) -> None:
    h = Harness()
    h.fail_starts = {"B": 100}
    sup = make(h, "ABC")
    with trio.fail_after(TIMEOUT), pytest.raises(EscalationError) as info:
        await sup.run()
    assert isinstance(info.value.__cause__, Boom)
    assert h.log == ["start A"] + ["start B"] * 4 + ["stop A"]
    assert "start C" not in h.log


async def test_earlier_crash_while_a_later_component_is_starting(autojump_clock: object) -> None:
    h = Harness()
    h.start_delay = {"C": 10.0}
    sup = make(h, "ABC")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run)
            await trio.sleep(1.0)
            assert h.log == ["start A", "start B", "start C"]
            h.crash("A")  # C is still starting: it is cancelled mid-start
            await settle()
            assert h.log[3:] == ["stop C", "stop B", "start A", "start B", "start C"]
            await trio.sleep(10.5)
            assert set(sup.status().values()) == {"running"}
            assert h.started_at["C"] == [11.0]
            nursery.cancel_scope.cancel()


async def test_returning_normally_counts_as_crash(autojump_clock: object) -> None:
    runs = 0

    async def quitter(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        await trio.sleep(1.0)

    sup = Supervisor([Component("q", quitter)])
    with trio.fail_after(TIMEOUT), pytest.raises(EscalationError) as info:
        await sup.run()
    cause = info.value.__cause__
    assert isinstance(cause, RuntimeError)
    assert "'q' exited unexpectedly (after it started)" in str(cause)
    assert runs == 4 and trio.current_time() == 4.0


async def test_returning_before_started_counts_as_crash(autojump_clock: object) -> None:
    async def lazy(*, task_status: trio.TaskStatus[None]) -> None:
        return

    sup = Supervisor([Component("lazy", lazy)], max_restarts=0)
    with trio.fail_after(TIMEOUT), pytest.raises(EscalationError) as info:
        await sup.run()
    assert "exited unexpectedly (before it started)" in str(info.value.__cause__)
    assert "1 crashes within 5 s" in str(info.value)


async def test_failure_while_being_stopped_is_not_a_new_crash(autojump_clock: object) -> None:
    log: list[str] = []

    async def messy(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            log.append("messy cleanup")
            raise Boom("cleanup failed")  # on purpose

    h = Harness()
    sup = Supervisor(
        [h.component("A"), Component("messy", messy)], on_event=h.on_event, max_restarts=1
    )
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            h.crash("A")
            await settle()
            assert sup.crashes == {"A": 1, "messy": 0}
            assert sup.restarts == {"A": 1, "messy": 1}
            assert set(sup.status().values()) == {"running"}
            nursery.cancel_scope.cancel()
    assert log == ["messy cleanup", "messy cleanup"]


async def test_broken_on_event_callback_does_not_stop_supervision(
    autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness()

    def broken(kind: str, name: str, exc: BaseException | None) -> None:
        raise ValueError("telemetry bug")

    sup = Supervisor([h.component("A"), h.component("B")], on_event=broken)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            h.crash("A")
            await settle()
            assert sup.restarts == {"A": 1, "B": 1}
            nursery.cancel_scope.cancel()
    assert "on_event callback failed" in caplog.text


async def test_components_are_stopped_in_reverse_on_outer_deadline(autojump_clock: object) -> None:
    h = Harness()
    sup = make(h, "ABCD")
    with trio.fail_after(TIMEOUT):
        with trio.move_on_after(3.0):
            await sup.run()
    assert trio.current_time() == 3.0
    assert h.log[4:] == ["stop D", "stop C", "stop B", "stop A"]


async def test_can_run_again_after_stopping_but_not_twice_at_once(autojump_clock: object) -> None:
    h = Harness()
    sup = make(h, "AB")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            with pytest.raises(RuntimeError, match="already running"):
                await sup.run()
            nursery.cancel_scope.cancel()
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            assert set(sup.status().values()) == {"running"}
            nursery.cancel_scope.cancel()
    assert h.log.count("start A") == 2


async def test_empty_supervisor_just_waits(autojump_clock: object) -> None:
    sup = Supervisor([])
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            assert sup.status() == {}
            nursery.cancel_scope.cancel()


async def test_rejects_bad_configuration() -> None:
    async def noop(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()

    with pytest.raises(ConfigError, match="repeated: a"):
        Supervisor([Component("a", noop), Component("a", noop)])
    with pytest.raises(ConfigError, match="max_restarts"):
        Supervisor([Component("a", noop)], max_restarts=-1)
    with pytest.raises(ConfigError, match="within_s"):
        Supervisor([Component("a", noop)], within_s=0)
    with pytest.raises(ConfigError, match="within_s"):
        Supervisor([Component("a", noop)], within_s=float("nan"))
