"""RESOLVE on the wire: epochs and the decision id's own field rule."""

from __future__ import annotations

import pytest

from node.core.hlc import MAX_NODE_NAME, Timestamp
from node.core.wire import MAX_DECISION_ID, Decoder, Resolve, encode
from node.errors import InvalidMessageError


def roundtrip(msg: Resolve) -> Resolve:
    d = Decoder()
    d.feed(encode(msg))
    (got,) = list(d)
    assert isinstance(got, Resolve)
    return got


def test_decision_id_of_a_longest_node_name_is_accepted() -> None:
    # the id is the node name plus "-" and 12 hex digits: longer than a name
    name = "n" * MAX_NODE_NAME
    msg = Resolve(f"{name}-0123456789ab", (name,), "alice@host", "why", Timestamp(5, 0, name), 3)
    assert roundtrip(msg) == msg


def test_epoch_round_trips_and_is_checked() -> None:
    msg = Resolve("a-1", ("a",), "op", "", Timestamp(5, 0, "a"), 2**40)
    assert roundtrip(msg).epoch == 2**40
    for bad in (0, -1, "1", 1.5):
        with pytest.raises(InvalidMessageError, match="RESOLVE epoch"):
            Resolve.from_wire(["a-1", ["a"], "op", "", [5, 0, "a"], bad, False])


@pytest.mark.parametrize("bad", ["", "x" * (MAX_DECISION_ID + 1), 5, None])
def test_bad_decision_id_is_refused_with_its_own_rule(bad: object) -> None:
    with pytest.raises(
        InvalidMessageError, match=f"decision_id must be a string of 1..{MAX_DECISION_ID}"
    ):
        Resolve.from_wire([bad, ["a"], "op", "", [5, 0, "a"], 1, False])


def test_resolve_needs_seven_fields() -> None:
    with pytest.raises(InvalidMessageError, match="RESOLVE needs 7 fields"):
        Resolve.from_wire(["a-1", ["a"], "op", "", [5, 0, "a"], 1])


def test_retired_flag_round_trips_and_is_checked() -> None:
    msg = Resolve("a-1", ("a",), "op", "", Timestamp(5, 0, "a"), 2, retired=True)
    assert roundtrip(msg).retired is True
    with pytest.raises(InvalidMessageError, match="RESOLVE retired must be true or false"):
        Resolve.from_wire(["a-1", ["a"], "op", "", [5, 0, "a"], 1, 1])
