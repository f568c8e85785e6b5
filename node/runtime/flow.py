"""Flow control: the waiting forms of publishing (issue 8).

``Node.send`` publishes and then, while the slowest connected voting member's
queue is above ``send_high_water``, waits until it falls below
``send_low_water`` (``BackpressureTimeout`` after its timeout). ``Node.flush``
waits until every connected peer has acknowledged everything queued for it.
Observers and unreachable peers never make a producer wait. The replicator
signals progress (acks that shrink a queue, a session that ends).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from node.errors import BackpressureTimeout

if TYPE_CHECKING:
    from node.config import NodeConfig
    from node.runtime.peerlink import PeerLink

#: Below high water, Node.send measures the queues and yields to the
#: scheduler (wait_for_room) once per this many sends, and whenever its event
#: woke the writer of an idle link that the publish path could not write to
#: itself (TLS), so that a sporadic sender's event leaves at once. A full
#: checkpoint per event costs more than the event, and so does measuring every
#: queue; the high-water mark may so be passed by at most this many events.
CHECK_EVERY = 128


class FlowControl:
    """Backpressure for ``Node.send`` and the wait of ``Node.flush``."""

    def __init__(
        self, config: NodeConfig, peers: dict[str, PeerLink], drain: Callable[[], None]
    ) -> None:
        self.config = config
        self.peers = peers
        # The replicator's stage: what publish staged counts in the queues.
        self._drain = drain
        self._progress = trio.Event()
        #: Tasks waiting here (the writer asks for acks at once while any do).
        self.waiting = 0
        #: Sends since send() last looked at the queues (Node.send counts them).
        self.unchecked = 0
        #: Publish woke an idle writer it could not write to (it runs once we yield).
        self.woke = False

    def signal_progress(self) -> None:
        """Queues shrank or a peer went away: waiters look again."""
        if self.waiting:
            self._progress.set()
            self._progress = trio.Event()

    def worst_depth(self) -> tuple[int, str]:
        """The deepest queue (lanes + unacknowledged) of a connected voting member."""
        self._drain()
        worst, name = 0, ""
        for peer in self.peers.values():
            if peer.connected and peer.role != "observer":
                depth = peer.outbox.depth
                if depth > worst:
                    worst, name = depth, peer.name
        return worst, name

    async def wait_for_room(self, limit_s: float | None) -> None:
        """Return at once unless the slowest connected member's queue is above the
        high-water mark; then wait until it is below the low-water mark.
        BackpressureTimeout after ``limit_s`` seconds."""
        cfg = self.config
        self.unchecked = 0
        self.woke = False
        depth, name = self.worst_depth()
        if depth > cfg.send_high_water:
            await self._wait_until(
                lambda: self.worst_depth()[0] < cfg.send_low_water,
                limit_s,
                lambda: (
                    f"peer {name!r} has {self.worst_depth()[0]} events queued "
                    f"(high water {cfg.send_high_water}, low water {cfg.send_low_water})"
                ),
            )
        else:
            await trio.lowlevel.checkpoint()

    async def flush(self, limit_s: float | None) -> None:
        """Wait until every connected peer has acknowledged everything queued for it."""
        self._drain()

        def behind() -> list[str]:
            return [n for n, p in self.peers.items() if p.connected and p.outbox.depth]

        await self._wait_until(
            lambda: not behind(),
            limit_s,
            lambda: (
                "not acknowledged yet by "
                + ", ".join(f"{n} ({self.peers[n].outbox.depth} events)" for n in behind())
            ),
        )

    async def _wait_until(
        self, done: Callable[[], bool], limit_s: float | None, why: Callable[[], str]
    ) -> None:
        self.waiting += 1
        try:
            with trio.move_on_after(limit_s if limit_s is not None else float("inf")) as scope:
                while not done():
                    await self._progress.wait()
        finally:
            self.waiting -= 1
        if scope.cancelled_caught:
            raise BackpressureTimeout(f"gave up after {limit_s:g} s: {why()}")
        await trio.lowlevel.checkpoint()
