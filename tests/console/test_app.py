"""The operator console against real nodes on the simulated network (Textual Pilot)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import trio.testing
from consoletest import SIZE, demo_app, full_mesh, press, rows, status, text_of, until
from textual.command import CommandList, CommandPalette
from textual.widgets import Log

from console.app import make_app
from console.screens.confirm import ConfirmScreen
from console.screens.help import HelpScreen
from console.screens.pick import PickScreen
from console.screens.resolve import ResolveScreen
from console.session import Session
from console.widgets.eventlog import EventLog
from console.widgets.variety import SHORT, level_of
from node.config import NodeConfig
from node.errors import EscalationError, NotBuiltError
from node.sim import SimNetwork


def test_panels_show_the_nodes_figures() -> None:
    async def main() -> None:
        app = demo_app(3, load_scale=0.5)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: full_mesh(app))
            demo = app.session.demo
            assert demo is not None
            node = demo.nodes["n1"]
            await until(pilot, lambda: node.variety.stats()["s1_operational"]["offered"] > 50)
            app.refresh_panels()
            await pilot.pause()
            header = text_of(app, "#header")
            assert "n1" in header and "cluster of 3 voting, 2 peers up" in header
            assert "static_quorum" in header and "healthy" in header and "primary" in header
            # Variety table: one row per channel, quotas as configured, offered
            # counts from the node (the rate column needs two snapshots).
            table = rows(app, "#variety-table")
            assert [r[0] for r in table] == list(SHORT.values())
            s1 = table[list(SHORT).index("s1_operational")]
            assert s1[2] == "1000" and s1[7] == "healthy"
            assert float(s1[1]) == round(app.snap["pressure"]["channels"]["s1_operational"], 2)
            app.refresh_panels()
            await pilot.pause()
            s1 = rows(app, "#variety-table")[list(SHORT).index("s1_operational")]
            assert s1[4] != "-"  # a measured rate now
            # Breakers: one row per peer, from the node's own breakers.
            breakers = rows(app, "#breaker-table")
            assert [r[0] for r in breakers] == ["n2", "n3"]
            assert all(r[1] == "up" and r[2] == "closed" for r in breakers)
            assert all(float(r[8]) >= 0.0 for r in breakers)  # round trip from acks
            body = text_of(app, "#partition-body")
            assert "status healthy" in body and "n1" in body and "n3" in body
            latency = text_of(app, "#algedonic-latency")
            assert "confirmed latency p50 - ms" in latency and "(0 broadcasts)" in latency
            assert app.session.events_seen > 0

    asyncio.run(main())


def test_manual_resolution_from_the_keyboard() -> None:
    async def main() -> None:
        app = demo_app(3, strategy="manual")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: full_mesh(app))
            demo = app.session.demo
            assert demo is not None
            demo.split(["n3"])
            await until(pilot, lambda: status(app) == "awaiting_operator")
            app.refresh_panels()
            await pilot.pause()
            banner = app.query_one("#partition-banner")
            assert banner.display and "AWAITING OPERATOR" in text_of(app, "#partition-banner")
            await press(pilot, "r")
            assert isinstance(app.screen, ResolveScreen)
            sides = app.screen.sides
            assert ["n1", "n2"] in sides
            # move the highlight to the side holding n1 and choose it
            for _ in range(sides.index(["n1", "n2"])):
                await press(pilot, "down")
            await press(pilot, "enter")
            assert isinstance(app.screen, ConfirmScreen)
            assert "degraded: n3." in str(app.screen.query_one("#confirm-body").render())
            await press(pilot, "y")
            await until(pilot, lambda: status(app) == "partitioned")
            app.refresh_panels()
            await pilot.pause()
            body = text_of(app, "#partition-body")
            assert "manual: console@n1" in body and "epoch 1" in body and "degraded: n3" in body
            assert demo.nodes["n1"].detector.resolutions[-1]["operator"] == "console@n1"
            # n2 hears of it over the wire and follows; the other side keeps waiting
            await until(pilot, lambda: status(app, "n2") == "partitioned")
            assert status(app, "n3") == "awaiting_operator"

    asyncio.run(main())


def test_escape_backs_out_of_resolution() -> None:
    async def main() -> None:
        app = demo_app(3, strategy="manual")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: full_mesh(app))
            assert app.session.demo is not None
            app.session.demo.split(["n3"])
            await until(pilot, lambda: status(app) == "awaiting_operator")
            app.refresh_panels()
            await press(pilot, "r", "enter")
            assert isinstance(app.screen, ConfirmScreen)
            await press(pilot, "escape")
            assert isinstance(app.screen, ResolveScreen)
            await press(pilot, "escape")
            await pilot.pause()
            assert status(app) == "awaiting_operator"

    asyncio.run(main())


def test_help_palette_and_quit_stops_the_nodes() -> None:
    async def main() -> None:
        app = demo_app(2)
        vsm = logging.getLogger("vsm")
        handlers = list(vsm.handlers)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.session.ready)
            await press(pilot, "question_mark")
            assert isinstance(app.screen, HelpScreen)
            keys = str(app.screen.query_one("#help-keys").render())
            for word in ("resolve", "flood", "kill", "one direction", "strategy", "quit"):
                assert word in keys
            await press(pilot, "escape")
            await press(pilot, "ctrl+p")
            assert isinstance(app.screen, CommandPalette)
            await press(pilot, *"flood")
            hits = app.screen.query_one(CommandList)
            await until(pilot, lambda: hits.option_count > 0)
            first = hits.get_option_at_index(0).prompt
            assert "flood S1 from the viewed node" in str(first) and "key: f" in str(first)
            await press(pilot, "enter")  # runs the action, as the key would
            assert app.session.demo is not None and "n1" in app.session.demo.flood_until
            await press(pilot, "ctrl+p", *"theme")
            found = app.screen.query_one(CommandList)

            def prompts() -> list[str]:
                return [str(found.get_option_at_index(i).prompt) for i in range(found.option_count)]

            await until(pilot, lambda: any("Change the current theme" in p for p in prompts()))
            await press(pilot, "escape")
            await pilot.pause()
            assert not isinstance(app.screen, CommandPalette)
            await press(pilot, "ctrl+q")
        assert app.node_stopped and app.return_code == 0
        assert app.session.demo is not None and app.session.demo.nodes == {}
        assert not app.session.ready
        assert vsm.handlers == handlers  # the ring handler is gone again

    asyncio.run(main())


def test_fault_keys_drive_the_simulated_network() -> None:
    async def main() -> None:
        app = demo_app(3)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: full_mesh(app))
            demo = app.session.demo
            assert demo is not None
            await press(pilot, "c")
            assert isinstance(app.screen, PickScreen)
            await press(pilot, "1", "3")
            assert demo.cuts == {("n1", "n3")} and not demo.net.reachable("n1", "n3")
            await press(pilot, "h", "3", "1")
            assert demo.cuts == set() and demo.net.reachable("n1", "n3")
            await press(pilot, "o", "2", "3")
            assert not demo.net.reachable("n2", "n3") and demo.net.reachable("n3", "n2")
            await press(pilot, "H")
            assert demo.net.reachable("n2", "n3") and demo.faults() == []
            await press(pilot, "i", "2")
            assert demo.isolated == {"n2"} and not demo.net.reachable("n1", "n2")
            await press(pilot, "i", "2")
            assert demo.isolated == set() and demo.net.reachable("n1", "n2")
            await press(pilot, "k", "3")
            await until(pilot, lambda: "n3" not in demo.nodes)
            app.refresh_panels()
            assert "n3 killed" in text_of(app, "#header")
            await press(pilot, "v", "3")  # view the dead node: said so, figures dimmed
            app.refresh_panels()
            assert "not running" in text_of(app, "#header")
            assert app.screen_stack[0].has_class("stale")
            await press(pilot, "v", "1")
            app.refresh_panels()
            assert not app.screen_stack[0].has_class("stale")
            await press(pilot, "k", "3")
            await until(pilot, lambda: full_mesh(app))
            await press(pilot, "v", "2")
            assert app.session.viewed == "n2"
            app.refresh_panels()
            assert text_of(app, "#header").lstrip().startswith("n2")
            offered = demo.nodes["n2"].variety.stats()["s1_operational"]["offered"]
            await press(pilot, "f")
            assert "n2" in demo.flood_until
            await until(
                pilot,
                lambda: (
                    demo.nodes["n2"].variety.stats()["s1_operational"]["offered"] > offered + 1000
                ),
            )

    asyncio.run(main())


def test_flood_raises_pressure_to_high() -> None:
    async def main() -> None:
        app = demo_app(2)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: full_mesh(app))
            demo = app.session.demo
            assert demo is not None
            demo.flood("n1", seconds=600.0)
            node = demo.nodes["n1"]

            def pressed() -> bool:
                # refresh and test in one step: pressure swings between flood slices
                app.refresh_panels()
                return bool(app.snap["pressure"]["channels"]["s1_operational"] > 0.8)

            await until(pilot, pressed)
            s1 = rows(app, "#variety-table")[list(SHORT).index("s1_operational")]
            shown = app.snap["pressure"]["channels"]["s1_operational"]
            assert shown > 0.5, "the flood was over before the refresh"
            assert s1[1] == f"{shown:.2f}" and s1[7] == level_of(shown).removeprefix("pressure-")
            assert app.node_error is None
            # identical flood events are folded into aggregates (semantic compression)
            assert node.variety.stats()["s1_operational"]["compressed"] > 0

    asyncio.run(main())


def test_test_signal_is_broadcast_and_confirmed() -> None:
    async def main() -> None:
        app = demo_app(3)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: full_mesh(app))
            demo = app.session.demo
            assert demo is not None
            await press(pilot, "s", "1", "3")  # pain, severity 8
            await until(pilot, lambda: bool(demo.nodes["n1"].health_report()["algedonic"]["last"]))
            last = demo.nodes["n1"].health_report()["algedonic"]["last"][-1]
            assert last["type"] == "pain" and last["severity"] == 8
            assert sorted(last["confirmed"]) == ["n2", "n3"] and last["failed"] == []
            # every other node delivered it to its subscribers once
            await until(pilot, lambda: any(s.source == "n1" for s in app.session.signals))
            app.refresh_panels()
            await pilot.pause()
            row = rows(app, "#algedonic-table")[0]
            assert row[1:5] == ["pain", "8", "console@n1", "INTERVENE"]
            assert row[5] == "2 confirmed" and row[6] != "-"
            line = text_of(app, "#algedonic-latency")
            assert "(1 broadcasts)" in line and "sent 1" in line and "failures 0" in line

    asyncio.run(main())


def test_a_node_that_cannot_start_exits_nonzero() -> None:
    async def main() -> None:
        net = SimNetwork()
        # listening on another host's address fails (EADDRNOTAVAIL) inside open_node
        config = NodeConfig(name="a", listen="b:7401", cookie="test-cookie-1234")
        session = Session(config, transport=net.transport("a"))
        app = make_app(session, clock=trio.testing.MockClock(autojump_threshold=0))
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.node_stopped)
            await pilot.pause()
        assert app.return_code == 1
        assert isinstance(app.node_error, EscalationError)
        assert "cannot bind b:7401" in str(app.node_error)

    asyncio.run(main())


def test_broken_theme_is_reported_and_skipped(tmp_path: Path) -> None:
    (tmp_path / "good.toml").write_text(
        'name = "good"\nprimary = "#112233"\n[variables]\npressure-high = "#FF0000"\n'
    )
    (tmp_path / "broken.toml").write_text('name = "broken"\nprimary = \n')
    (tmp_path / "badcolour.toml").write_text('name = "badcolour"\nprimary = "not-a-colour"\n')

    async def main() -> None:
        app = demo_app(2, theme="good", theme_dir=tmp_path)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await pilot.pause()
            assert app.theme == "good"
            assert app.theme_variables["pressure-high"] == "#FF0000"
            errors = " ".join(app.theme_errors)
            assert "broken.toml" in errors and "badcolour" in errors
            assert "good" not in errors
            assert "broken" not in app.available_themes

    asyncio.run(main())


def test_shipped_themes_include_high_contrast() -> None:
    async def main() -> None:
        app = demo_app(2, theme="vsm-high-contrast")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert app.theme_errors == []
            assert {"vsm-dark", "vsm-light", "vsm-high-contrast"} <= set(app.available_themes)
            assert app.theme_variables["background"].upper() == "#000000"

    asyncio.run(main())


def test_filter_and_pause() -> None:
    async def main() -> None:
        app = demo_app(2, load_scale=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: full_mesh(app))
            await press(pilot, "slash", *"vsm.detector", "enter")
            events = app.query_one("#events", EventLog)
            assert events.filter == "vsm.detector"
            app.refresh_panels()
            lines = [str(line) for line in app.query_one("#eventlog", Log).lines]
            assert lines and all("vsm.detector" in line for line in lines)
            await press(pilot, "slash", "escape")
            assert events.filter == ""
            await press(pilot, "space")
            assert app.paused and "PAUSED" in text_of(app, "#header")
            frozen = app.snap
            app.refresh_panels()
            assert app.snap is frozen  # no new snapshot while paused
            await press(pilot, "space")
            assert not app.paused and app.snap is not frozen

    asyncio.run(main())


def test_panels_light_up_when_the_node_reports_more() -> None:
    """Parts another subsystem will fill: absent, the panel says so; present, it shows them."""

    async def main() -> None:
        app = demo_app(2)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: full_mesh(app))
            assert app.session.demo is not None
            node = app.session.demo.nodes["n1"]
            report = node.health_report

            def with_algedonic() -> dict[str, Any]:
                return {
                    **report(),
                    "algedonic": {
                        "latency_p50_ms": 3.0,
                        "latency_p99_ms": 9.5,
                        "recent": [
                            {
                                "type": "viability_threat",
                                "severity": "critical",
                                "source": "n2",
                                "status": "confirmed",
                                "latency_ms": 4.25,
                            },
                        ],
                    },
                }

            def not_yet() -> dict[str, Any]:
                raise NotBuiltError("peer details are not built yet")

            await until(pilot, lambda: "not_built" in app.session.history)
            app.refresh_panels()
            # demo nodes keep no journal: the panel says so instead of showing rows
            assert "history: this node keeps no journal (no data_dir)" in text_of(
                app, "#partition-body"
            )

            async def history(limit: int) -> list[dict[str, Any]]:
                return [{"time": 0, "kind": "resolved", "survivors": ["n1"]}][:limit]

            node.history = history  # type: ignore[attr-defined]
            await until(pilot, lambda: "entries" in app.session.history)
            node.health_report = with_algedonic  # type: ignore[method-assign]
            node.peer_report = not_yet  # type: ignore[method-assign]
            app.refresh_panels()
            await pilot.pause()
            assert "p50 3.0 ms, p99 9.5 ms" in text_of(app, "#algedonic-latency")
            row = rows(app, "#algedonic-table")[0]
            assert row[1:4] == ["viability_threat", "critical", "n2"]
            assert row[5:] == ["confirmed", "4.2"]
            assert "breaker details: peer details are not built yet" in text_of(
                app, "#breaker-note"
            )
            assert [r[0] for r in rows(app, "#breaker-table")] == ["n2"]
            assert "resolved survivors=['n1']" in text_of(app, "#partition-body")

    asyncio.run(main())


def test_one_way_link_and_strategy_switch() -> None:
    async def main() -> None:
        app = demo_app(3)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: full_mesh(app))
            demo = app.session.demo
            assert demo is not None
            await press(pilot, "o", "1", "3")
            n1 = demo.nodes["n1"]
            # Reported one-way while the connection lasts; once it dies of silence
            # the link is cut both ways and n1, n3 are indirectly connected.
            await until(
                pilot,
                lambda: bool(
                    n1.partition_status()["asymmetric"] or n1.partition_status()["indirect"]
                ),
            )
            seen = n1.partition_status()
            app.refresh_panels()
            body = text_of(app, "#partition-body")
            if seen["asymmetric"]:
                assert "one-way:" in body
            else:
                assert f"indirect: {', '.join(seen['indirect'])}" in body
            # the node's telemetry reaches the event log, tagged with the node
            await until(
                pilot,
                lambda: any(
                    line.kind == "telem" and line.source == "n1" and "partition." in line.text
                    for line in app.session.logs
                ),
            )
            await press(pilot, "H")
            await until(pilot, lambda: full_mesh(app))
            await press(pilot, "t", "4")  # manual: every node restarted with it
            await until(
                pilot,
                lambda: (
                    not demo.restarting
                    and full_mesh(app)
                    and all(n.config.strategy == "manual" for n in demo.nodes.values())
                ),
            )
            app.refresh_panels()
            assert "strategy manual" in text_of(app, "#header")

    asyncio.run(main())


def test_an_observer_resolves_the_cluster_it_watches() -> None:
    async def main() -> None:
        app = demo_app(4, strategy="manual", observer=True)
        async with app.run_test(size=SIZE) as pilot:
            assert app.session.viewed == "op"
            await until(pilot, lambda: full_mesh(app))
            demo = app.session.demo
            assert demo is not None
            app.refresh_panels()
            header = text_of(app, "#header")
            assert "role observer" in header and "cluster of 4 voting" in header
            demo.split(["n3", "n4"])  # op stays with n1 and n2
            await until(pilot, lambda: status(app) == "awaiting_operator")
            app.refresh_panels()
            await press(pilot, "r")
            assert isinstance(app.screen, ResolveScreen)
            assert ["n1", "n2"] in app.screen.sides
            assert all("op" not in side for side in app.screen.sides)  # outside the vote
            for _ in range(app.screen.sides.index(["n1", "n2"])):
                await press(pilot, "down")
            await press(pilot, "enter", "y")
            await until(pilot, lambda: status(app, "n1") == "partitioned")
            assert "console@op via op" in demo.nodes["n1"].detector.resolutions[-1]["operator"]

    asyncio.run(main())
