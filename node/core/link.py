"""The receiving side of one link (one peer -> this node), sans-IO.

The sender numbers events consecutively per link (node.core.outbox) and
sends each frame as ``first_seq`` plus the events in order, along with its
``ack_floor`` (everything below was acknowledged and is never sent again).
TCP keeps frames in order, and a reconnect resends what is unacknowledged
from the lowest number, so the receiver only has to remember the highest
number it has processed: anything at or below it is a replay, skipped.

Unlike a window of remembered ids, this never refuses an event it has not
processed, however late or however many others came first. Link state is per
sender incarnation (a restarted sender numbers from the start again); a
restarted receiver starts from the sender's ``ack_floor``.

Processed means delivered, or refused with a reason that goes back to the
sender in the next acknowledgement (the sender counts it as dropped).
"""

from __future__ import annotations


class InboundLink:
    """What this node has processed of one peer's link, and what to ack."""

    __slots__ = ("acked", "duplicates", "gaps", "incarnation", "processed", "refused")

    def __init__(self, incarnation: int) -> None:
        self.incarnation = incarnation
        self.processed: int | None = None  # highest seq processed; None: nothing yet
        self.acked = 0  # highest seq acknowledged on the current connection
        self.refused: dict[int, str] = {}  # seq -> reason, until the sender settles it
        self.duplicates = 0
        self.gaps = 0

    def begin(self, first_seq: int, ack_floor: int, count: int) -> int:
        """A frame of ``count`` events from ``first_seq``: how many leading ones
        to skip because they were processed already.

        A jump forward (a number missing) cannot happen with a well-behaved
        sender; it is counted in ``gaps`` and the frame is processed anyway,
        since refusing events nobody delivered would lose them.
        """
        if self.refused:
            # The sender settled everything below its floor: those refusals
            # reached it. Others are repeated with every ack until they do.
            for seq in [s for s in self.refused if s < ack_floor]:
                del self.refused[seq]
        processed = self.processed
        if processed is None:
            processed = ack_floor - 1
        skip = processed - first_seq + 1
        if skip <= 0:
            if skip < 0:
                self.gaps += -skip
            skip = 0
        elif skip > count:
            skip = count
        self.duplicates += skip
        last = first_seq + count - 1
        self.processed = last if last > processed else processed
        return skip

    def refuse(self, seq: int, reason: str) -> None:
        """Event ``seq`` was processed by refusing it; the sender hears why."""
        self.refused[seq] = reason

    @property
    def ack_due(self) -> bool:
        return self.processed is not None and self.processed > self.acked

    @property
    def unacknowledged(self) -> int:
        """Events processed since the last ack was taken."""
        return 0 if self.processed is None else max(0, self.processed - self.acked)

    def reconnected(self) -> None:
        """A new connection from the same sender: acknowledge again what we have
        (the last ack may have been lost with the old connection)."""
        self.acked = 0

    def take_ack(self) -> tuple[int, dict[int, str]]:
        """The cumulative ack to send now, and the refusals it covers (kept, and
        repeated, until the sender's floor passes them: an ack lost with a
        connection must not turn a refusal into "sent")."""
        upto = self.processed if self.processed is not None else 0
        self.acked = upto
        return upto, dict(self.refused) if self.refused else {}
