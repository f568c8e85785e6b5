"""Smoke test of the benchmark harness's pure parts (the benchmarks never run in pytest).

Imported by pytest as ``bench.test_bench_report`` (``tests`` is on the path),
so the harness modules are reached as ``bench.*``.
"""

from __future__ import annotations

import json

import pytest

from bench.__main__ import parse_only
from bench.procs import MissingPeerError, WorkerError
from bench.proto import parse
from bench.report import (
    HIGHER,
    LOWER,
    Measurement,
    Row,
    combine_rounds,
    format_lost,
    format_table,
    format_value,
    paired_ratios,
    percentile,
    rate,
    ratio_text,
    to_json,
)
from bench.rows import (
    ROWS,
    Settings,
    delivery,
    guarded,
    latency_rows,
    scream_rows,
    sender_accounting,
)


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(reversed(values), 1) == 1
    assert percentile([7.0], 99) == 7.0
    # 200 samples: p99 is the 198th smallest, an observed value.
    assert percentile(range(200), 99) == 197
    assert percentile([3, 1, 2], 50) == 2


@pytest.mark.parametrize("q", [0, -1, 100.5])
def test_percentile_refuses_bad_q(q: float) -> None:
    with pytest.raises(ValueError, match="percentile q"):
        percentile([1, 2], q)


def test_percentile_refuses_no_values() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_rate() -> None:
    assert rate(1000, 0, 500_000_000) == 2000.0
    assert rate(0, 0, 10) == 0.0
    assert rate(5, 10, 10) == 0.0


def test_formatting_of_values_and_loss() -> None:
    assert format_value(173_456.7, "ev/s") == "173,457 ev/s"
    assert format_value(4.567, "µs") == "4.57 µs"
    assert format_value(45.67, "µs") == "45.7 µs"
    assert format_value(None, "µs") == "-"
    assert format_lost(Measurement("x", 1.0, "ev/s", lost=23_000, sent=200_000)) == (
        "23,000 of 200,000"
    )
    assert format_lost(Measurement("x", 1.0, "ev/s", lost=-2, sent=10)) == "2 extra of 10"
    assert format_lost(Measurement("x", 1.0, "ev/s")) == ""


def throughput_row() -> Row:
    row = Row("throughput", "throughput", HIGHER)
    row.add(Measurement("ours, publish", 200.0, "ev/s", ours=True, extra={"label": "publish"}))
    row.add(Measurement("ours, send", 400.0, "ev/s", ours=True, extra={"label": "send"}))
    row.add(Measurement("nats", 100.0, "ev/s", lost=0, sent=10))
    row.add(Measurement("redis", None, "ev/s", note="skipped: redis-server not found"))
    return row


def test_ratio_is_ours_over_peer_for_each_figure_of_ours() -> None:
    row = throughput_row()
    nats, redis = row.items[2], row.items[3]
    assert ratio_text(row, nats) == "publish 2.00x, send 4.00x"
    assert ratio_text(row, redis) == ""  # skipped: no figure, no ratio
    assert ratio_text(row, row.items[0]) == ""  # our own line
    one = Row("local", "local", LOWER)
    one.add(Measurement("ours", 3.0, "µs", ours=True))
    blinker = one.add(Measurement("blinker", 1.5, "µs"))
    assert ratio_text(one, blinker) == "2.00x"


def test_ratio_skips_ours_without_a_figure() -> None:
    row = Row("throughput", "throughput", HIGHER)
    row.add(Measurement("ours, publish", 300.0, "ev/s", ours=True))
    row.add(Measurement("ours, send", None, "ev/s", ours=True, note="not available"))
    peer = row.add(Measurement("nats", 100.0, "ev/s"))
    assert ratio_text(row, peer) == "3.00x"


def test_table_has_header_titles_lines_and_notes() -> None:
    row = throughput_row()
    row.notes.append("lost = sent - received")
    text = format_table(["bench header", ""], [row])
    lines = text.splitlines()
    assert lines[0] == "bench header"
    assert lines[2].split() == ["system", "figure", "lost", "ours/peer", "note"]
    assert set(lines[3]) == {"-"}
    assert lines[4] == "throughput (higher is better)"
    nats = next(line for line in lines if line.startswith("  nats"))
    assert "100 ev/s" in nats and "0 of 10" in nats and "publish 2.00x, send 4.00x" in nats
    redis = next(line for line in lines if line.startswith("  redis"))
    assert redis.rstrip().endswith("skipped: redis-server not found")
    assert lines[-1] == "  note: lost = sent - received"


def test_json_holds_every_item_and_its_ratio() -> None:
    data = to_json({"cpu_count": 2}, [throughput_row()])
    json.dumps(data)  # JSON-able
    items = data["rows"][0]["items"]
    assert [i["system"] for i in items] == ["ours, publish", "ours, send", "nats", "redis"]
    assert items[2]["ratio"] == "publish 2.00x, send 4.00x"
    assert items[3]["ratio"] is None and items[3]["value"] is None
    assert data["meta"] == {"cpu_count": 2}


def test_delivery_counts_loss_and_rate_from_worker_replies() -> None:
    sent = {"published": 1000, "t0_ns": 0, "t1_ns": 1}
    got = {"received": 900, "first_ns": 1, "last_ns": 1_000_000_000, "reason": "idle"}
    m = delivery("x", sent, got, ours=True)
    assert (m.value, m.lost, m.sent, m.ours, m.note) == (900.0, 100, 1000, True, "")
    got["reason"] = "timeout"
    assert delivery("x", sent, got).note == "receiver timed out"


def test_latency_rows_from_samples_and_from_reasons() -> None:
    samples = {"samples_ns": [1000 * i for i in range(1, 101)]}
    rows = latency_rows(
        "rtt",
        "round trip",
        [("ours", True, samples, 102), ("nats", False, "skipped: nats-server not found", 0)],
    )
    assert [r.key for r in rows] == ["rtt_p50", "rtt_p99"]
    p50, p99 = rows
    assert (p50.items[0].value, p99.items[0].value) == (50.0, 99.0)
    assert p50.items[0].lost == 2  # 102 asked, 100 answered
    assert p50.items[0].extra["summary_us"] == {
        "n": 100,
        "min": 1.0,
        "p50": 50.0,
        "p90": 90.0,
        "p99": 99.0,
        "max": 100.0,
    }
    assert p50.items[1].value is None and p50.items[1].note.startswith("skipped")


def test_scream_rows_from_the_algedonic_benchmarks_json_line() -> None:
    # what `python -m tests.bench.bench_algedonic N a-lifted --json` prints last
    got = {
        "mode": "a-lifted",
        "peers": 4,
        "phases": [
            {
                "label": "idle",
                "n": 100,
                "failed": 0,
                "latencies_ms": [i / 10 for i in range(1, 101)],
            },
            {"label": "S1 flood (a-lifted)", "n": 100, "failed": 2, "latencies_ms": [3.5] * 98},
        ],
    }
    p50, p99 = scream_rows(got, "confirmed alarm to 4 peers", "")
    assert [m.system for m in p50.items] == ["ours, idle", "ours, during S1 flood"]
    assert (p50.items[0].value, p99.items[0].value) == (5000.0, 9900.0)  # µs
    assert p99.items[1].value == 3500.0 and p99.items[1].lost == 2  # 2 screams not confirmed
    assert "goal: p99 under 10 ms" in p99.notes[-1]


def test_only_selects_rows_in_table_order() -> None:
    assert parse_only(None) == list(ROWS)
    assert parse_only("rss, local") == ["local", "rss"]
    with pytest.raises(SystemExit, match="unknown row"):
        parse_only("local,nope")


def test_quick_settings_are_smaller() -> None:
    full, quick = Settings(), Settings.quick()
    assert full.n == 200_000
    assert quick.n < full.n and quick.rtt_m < full.rtt_m and quick.timeout_s <= full.timeout_s


def test_proto_parse() -> None:
    assert parse('{"cmd": "drain", "expect": 3}\n') == {"cmd": "drain", "expect": 3}
    assert parse(b"") == {"cmd": "exit"}  # end of input
    assert parse("not json")["cmd"] == "exit"
    assert parse("[1, 2]") == {"cmd": "exit"}


def test_sender_accounting_says_what_loss_the_sender_did_not_count() -> None:
    stats = {"variety": {"peers": {"b": {"dropped": 25_852, "throttled": 0, "compressed": 0}}}}
    assert sender_accounting(stats, 35_852) == "a counted dropped 25,852, 10,000 unaccounted"
    assert sender_accounting(stats, 25_852) == "a counted dropped 25,852, 0 unaccounted"
    assert sender_accounting({"variety": {"peers": {}}}, 0) == ""
    assert sender_accounting({}, 5) == "5 unaccounted"


def test_guarded_turns_missing_and_failing_systems_into_notes() -> None:
    def missing() -> Measurement:
        raise MissingPeerError("nats-server not found (apt-get install nats-server)")

    def broken() -> Measurement:
        raise WorkerError("nats-sub exited (1) before answer")

    skipped = guarded("nats", "ev/s", missing)
    assert skipped.value is None
    assert skipped.note == "skipped: nats-server not found (apt-get install nats-server)"
    failed = guarded("ours", "ev/s", broken, ours=True)
    assert failed.ours and failed.value is None
    assert failed.note == "failed: WorkerError: nats-sub exited (1) before answer"
    ok = guarded("zmq", "ev/s", lambda: Measurement("zmq", 5.0, "ev/s"))
    assert ok.value == 5.0


def test_rounds_combine_to_the_median_with_loss_summed() -> None:
    rounds = [
        Measurement("ours", 300.0, "ev/s", ours=True, lost=0, sent=10),
        Measurement("ours, round 2", None, "ev/s", ours=True, note="failed: boom"),
        Measurement("ours", 100.0, "ev/s", ours=True, lost=2, sent=10),
        Measurement("ours", 200.0, "ev/s", ours=True, lost=0, sent=10),
    ]
    m = combine_rounds([rounds[0], rounds[2], rounds[3]])
    assert (m.value, m.lost, m.sent, m.system, m.ours) == (200.0, 2, 30, "ours", True)
    assert m.extra["rounds"] == [300.0, 100.0, 200.0]
    partial = combine_rounds(rounds)
    assert partial.value == 200.0 and partial.lost is None  # a round without loss figures
    assert partial.note == "failed: boom"
    none = combine_rounds([rounds[1]])
    assert none.value is None and none.note == "failed: boom"
    with pytest.raises(ValueError, match="no rounds"):
        combine_rounds([])


def test_paired_ratios_are_round_by_round() -> None:
    ours = combine_rounds([Measurement("o", v, "ev/s", ours=True) for v in (200.0, 90.0, 300.0)])
    peer = combine_rounds([Measurement("p", v, "ev/s") for v in (100.0, 0.0, 100.0)])
    peer.extra["rounds"][1] = None  # that round failed
    assert paired_ratios(ours, peer) == [2.0, 3.0]
