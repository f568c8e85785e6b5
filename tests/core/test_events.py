"""Event model: channels, classification, wire form and validation."""

from __future__ import annotations

import pytest

from node.core.events import CHANNEL_TYPES, Channel, Classifier, Event, classify
from node.core.hlc import Timestamp
from node.errors import ConfigError, InvalidMessageError, LimitExceededError


def make(**kw: object) -> Event:
    base: dict[str, object] = dict(
        type="task_execution",
        channel=Channel.S1_OPERATIONAL,
        data={"task": "t1", "n": 3, "nested": {"a": [1, 2.5, None, True]}},
        source="a",
        hlc=Timestamp(1_000, 2, "a"),
    )
    base.update(kw)
    return Event(**base)  # type: ignore[arg-type]


def test_channel_values_and_priority() -> None:
    assert [c.value for c in Channel] == [
        "algedonic",
        "s5_policy",
        "s4_intelligence",
        "s3_control",
        "s2_coordination",
        "s1_operational",
        "general",
    ]
    assert Channel.ALGEDONIC.priority == 0
    assert Channel.GENERAL.priority == 6


@pytest.mark.parametrize(
    ("event_type", "channel"),
    [
        ("system_panic", Channel.ALGEDONIC),
        ("viability_threat", Channel.ALGEDONIC),
        ("policy_update", Channel.S5_POLICY),
        ("threat_assessment", Channel.S4_INTELLIGENCE),
        ("control_override", Channel.S3_CONTROL),
        ("anti_oscillation", Channel.S2_COORDINATION),
        ("task_execution", Channel.S1_OPERATIONAL),
        ("something_else", Channel.GENERAL),
        ("", Channel.GENERAL),
    ],
)
def test_classify(event_type: str, channel: Channel) -> None:
    assert classify(event_type) is channel
    assert Classifier()(event_type) is channel


def test_every_design_type_is_classified_to_its_channel() -> None:
    for channel, types in CHANNEL_TYPES.items():
        for t in types:
            assert classify(t) is channel
    assert sum(len(t) for t in CHANNEL_TYPES.values()) == 26


def test_extra_mappings_from_config_win() -> None:
    extra = {"billing_run": "s1_operational", "task_execution": Channel.S3_CONTROL}
    assert classify("billing_run", extra) is Channel.S1_OPERATIONAL
    assert classify("task_execution", extra) is Channel.S3_CONTROL
    c = Classifier(extra)
    assert c("billing_run") is Channel.S1_OPERATIONAL
    with pytest.raises(ConfigError, match="unknown channel 's9'"):
        Classifier({"x": "s9"})


def test_identity_and_roundtrip() -> None:
    e = make()
    assert e.id == ("a", Timestamp(1_000, 2, "a"))
    assert Event.from_wire(e.to_wire()) == e
    agg = make(compressed=True, hops=2)
    assert Event.from_wire(agg.to_wire()) == agg
    assert e.relayed().hops == 1


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda w: w[:6], InvalidMessageError),
        (lambda w: [*w, 0], InvalidMessageError),
        (lambda w: [1, *w[1:]], InvalidMessageError),
        (lambda w: [w[0], "s9", *w[2:]], InvalidMessageError),
        (lambda w: [*w[:2], [1, 2], *w[3:]], InvalidMessageError),
        (lambda w: [*w[:2], {1: 2}, *w[3:]], InvalidMessageError),
        (lambda w: [*w[:2], {"k": object()}, *w[3:]], InvalidMessageError),
        (lambda w: [*w[:3], "", *w[4:]], InvalidMessageError),
        (lambda w: [*w[:4], [-5, 0, "a"], *w[5:]], InvalidMessageError),
        (lambda w: [*w[:4], [5, 0], *w[5:]], InvalidMessageError),
        (lambda w: [*w[:4], "5.0@a", *w[5:]], InvalidMessageError),
        (lambda w: [*w[:4], [5, 2**31, "a"], *w[5:]], InvalidMessageError),
        (lambda w: [*w[:4], [5, 0, ""], *w[5:]], InvalidMessageError),
        (lambda w: [*w[:5], 99, w[6]], InvalidMessageError),
        (lambda w: [*w[:5], -1, w[6]], InvalidMessageError),
        (lambda w: [*w[:6], "yes"], InvalidMessageError),
        (lambda w: "not a list", InvalidMessageError),
    ],
)
def test_from_wire_rejects_malformed(mutate: object, error: type[Exception]) -> None:
    wire = make().to_wire()
    with pytest.raises(error):
        Event.from_wire(mutate(wire))  # type: ignore[operator]


def test_deep_data_is_rejected_without_recursion() -> None:
    deep: dict[str, object] = {}
    cur = deep
    for _ in range(5_000):
        nxt: dict[str, object] = {}
        cur["k"] = nxt
        cur = nxt
    wire = make().to_wire()
    wire[2] = deep
    with pytest.raises(LimitExceededError, match="deeper than 32"):
        Event.from_wire(wire)
