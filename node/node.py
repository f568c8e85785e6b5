"""Node: wires the components together; the public facade.

from node import NodeConfig, open_node
async with open_node(NodeConfig(name="a", cookie="s3cret")) as n:
    n.subscribe("task_execution", print)
    n.publish("task_execution", {"task": "t1"})
"""

from __future__ import annotations

import getpass
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from node.config import NodeConfig
from node.core.events import Channel, Classifier, Event, check_data, check_event_type
from node.core.hlc import HLC
from node.core.variety import VarietyManager, pressure_level
from node.errors import ConfigError, JournalError, NotBuiltError
from node.runtime.bridge import ClusterBridge
from node.runtime.detector import PartitionDetector
from node.runtime.discovery import DEFAULT_GOSSIP_GROUP, DEFAULT_GOSSIP_PORT, make_discovery
from node.runtime.journal import JOURNAL_FILE, STATE_FILE, Journal, StateFile
from node.runtime.supervisor import Component, Supervisor
from node.runtime.transport import make_transport

log = logging.getLogger("vsm.node")

Callback = Callable[[Event], None]


@attrs.define(eq=False)
class Subscription:
    """A live subscription; ``cancel()`` stops deliveries (idempotent)."""

    key: str | Channel
    callback: Callback
    _node: Node
    active: bool = True

    def cancel(self) -> None:
        if self.active:
            self.active = False
            self._node._unsubscribe(self)


class Node:
    """One whole VSM node. Create it with :func:`open_node`."""

    def __init__(self, config: NodeConfig, *, transport: Any = None) -> None:
        self.config = config
        self.name = config.name
        self.incarnation = secrets.randbits(62)
        self.hlc = HLC(config.name, max_offset_ms=config.max_offset_ms)
        self.classify = Classifier(config.event_types)
        self.variety = VarietyManager(config.quotas, capacities=config.capacities)
        self.transport = transport if transport is not None else make_transport(config)
        self._subs: dict[str | Channel, list[Subscription]] = {}
        self.delivery_errors = 0
        self.bridge = ClusterBridge(
            config,
            transport=self.transport,
            hlc=self.hlc,
            variety=self.variety,
            deliver=self._dispatch,
            incarnation=self.incarnation,
        )
        self.detector = PartitionDetector(
            config,
            self.bridge,
            health=self.health_report,
            alarm=lambda kind, data: self.publish(kind, data),
            stamp=self.hlc.now,
            announce=lambda kind, data: self.publish(kind, data),
        )
        # Persistence in data_dir (issue 10): opened by open_node, see open_storage().
        self.journal: Journal | None = None
        self.bridge.on_breaker = self._on_breaker  # HOOK(issue 10): journal breaker transitions
        self.subscribe(Channel.ALGEDONIC, self._journal_algedonic)
        self.discovery: Any = None
        self._discovery_options = self._check_discovery()
        # rest_for_one order: a crash restarts that component and all after it.
        # (AlgedonicBroadcast, between variety and bridge, is not built yet.)
        self.supervisor = Supervisor(
            [
                Component("journal", self._run_journal),
                Component("partition_detector", self.detector.run),
                Component("variety", self.bridge.run_variety),
                Component("bridge", self.bridge.run),
                Component("discovery", self._run_discovery),
            ],
            on_event=self._on_supervisor_event,
        )

    # --- pub/sub ------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The "host:port" this node actually listens on (and advertises)."""
        return self.bridge.address

    def subscribe(self, key: str | Channel, callback: Callback) -> Subscription:
        """Call ``callback(event)`` for an event type, a Channel, or "*" (everything).

        Callbacks are synchronous and run on the node's trio thread; an
        exception in one is logged and counted, never propagated.
        """
        if not isinstance(key, Channel) and key != "*":
            check_event_type(key)
        sub = Subscription(key, callback, self)
        self._subs.setdefault(key, []).append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.key, [])
        if sub in subs:
            subs.remove(sub)

    def publish(self, event_type: str, data: Mapping[str, Any] | None = None) -> Event:
        """Stamp, deliver locally, and replicate (subject to variety control)."""
        check_event_type(event_type)
        self.detector.check_may_originate(self.classify(event_type))  # HOOK(issue 10)
        payload = check_data({} if data is None else data)
        event = Event(
            event_type, self.classify(event_type), dict(payload), self.name, self.hlc.now()
        )
        self._dispatch(event)
        self.bridge.replicate(event)
        return event

    def _dispatch(self, event: Event) -> None:
        subs = self._subs
        for key in (event.type, event.channel, "*"):
            for sub in subs.get(key, ()):
                try:
                    sub.callback(event)
                except Exception:
                    self.delivery_errors += 1
                    log.exception("subscriber to %s failed on %s", sub.key, event.type)

    # --- views ----------------------------------------------------------------------

    def variety_stats(self) -> dict[str, Any]:
        """Per channel (variety manager) and per peer (offered == sent + ... ) figures."""
        bridge = self.bridge.stats()
        return {"channels": self.variety.stats(), **bridge}

    def variety_pressure(self) -> dict[str, Any]:
        """Pressure per channel in [0, 1], the overall figure and its level."""
        now = trio.current_time()
        per = {c.value: round(p, 4) for c, p in self.variety.pressure(now).items()}
        overall = self.variety.overall_pressure(now)
        return {"channels": per, "overall": round(overall, 4), "level": pressure_level(overall)}

    def health_report(self) -> dict[str, Any]:
        """VSM health in [0, 1], derived from measurements, never invented.

        Each system's health is 1 - its channel's variety pressure (how much
        headroom it has); ``connectivity`` is the share of known members we are
        connected to; ``overall`` is the lower of connectivity and the mean of
        the systems' health.
        """
        now = trio.current_time()
        pressure = self.variety.pressure(now)
        systems = {
            "s1": 1.0 - pressure[Channel.S1_OPERATIONAL],
            "s2": 1.0 - pressure[Channel.S2_COORDINATION],
            "s3": 1.0 - pressure[Channel.S3_CONTROL],
            "s4": 1.0 - pressure[Channel.S4_INTELLIGENCE],
            "s5": 1.0 - pressure[Channel.S5_POLICY],
        }
        members = [n for n in self.bridge.members if n != self.name]
        peers = self.bridge.peers
        connected = sum(1 for n in members if n in peers and peers[n].connected)
        connectivity = connected / len(members) if members else 1.0
        mean = sum(systems.values()) / len(systems)
        report = {k: round(v, 4) for k, v in systems.items()}
        report["connectivity"] = round(connectivity, 4)
        report["overall"] = round(min(connectivity, mean), 4)
        return report

    def topology(self) -> dict[str, Any]:
        return {
            "node": self.name,
            "address": self.address,
            "role": self.config.role,
            "peers": sorted(self.bridge.peers),
            "members": dict(sorted(self.bridge.members.items())),
            "peer_states": self.bridge.peer_states(),
            "partition_status": self.partition_status(),
            "variety_pressure": self.variety_pressure(),
            "components": self.supervisor.status(),
            "journal": self.journal.stats() if self.journal is not None else None,
        }

    # --- partitions and alarms ------------------------------------------------------

    def partition_status(self) -> dict[str, Any]:
        """The last analysis: status, components, one-way links, the decision."""
        return self.detector.status()

    async def check_partitions(self) -> dict[str, Any]:
        """Analyse reachability now (instead of at the next check) and return the status."""
        await trio.lowlevel.checkpoint()
        return self.detector.check()

    async def resolve_partition(
        self, keep: Collection[str], operator: str | None = None
    ) -> dict[str, Any]:
        """An operator's decision: the side holding ``keep`` continues.

        ``operator`` defaults to ``user@host``. The decision gets the next
        epoch, is applied here at once, journaled, and replicated to every
        other node as it becomes reachable. ResolutionError if the cluster is
        healthy or ``keep`` does not name nodes of exactly one side.
        """
        await trio.lowlevel.checkpoint()
        self.detector.resolve(keep, operator or _operator())
        return self.detector.status()

    async def algedonic_scream(self, data: Mapping[str, Any]) -> dict[str, Any]:
        raise NotBuiltError(
            "algedonic broadcast (redundant paths, confirmations, retries) is not built yet; "
            "publish an algedonic event type to send one without confirmation"
        )

    # --- persistence and the journal (issue 10) --------------------------------------

    def open_storage(self) -> None:
        """Open data_dir: reload membership and the newest decision, open the journal.

        JournalError (naming the path) if the state file or the journal is
        corrupt or unwritable; the journal is skipped only with ``journal=False``
        (``--no-journal``). Without a data_dir nothing is persisted. Runs once,
        before any task of the node: blocking file I/O of a few milliseconds
        (later writes go through worker threads).
        """
        cfg = self.config
        if cfg.data_dir is None:
            log.info("no data_dir: membership, decisions and the journal are not persisted")
            return
        state_file = StateFile(Path(cfg.data_dir) / STATE_FILE)
        state_file.check_writable()
        self.detector.load_state(state_file.load())
        self.detector.state_file = state_file
        if not cfg.journal:
            log.warning("journal disabled (--no-journal): nothing is audited")
            return
        self.journal = Journal.open(
            Path(cfg.data_dir) / JOURNAL_FILE,
            node=self.name,
            retention_days=cfg.journal_retention_days,
            retention_rows=cfg.journal_retention_rows,
        )
        self.detector.journal = self.journal
        self.journal.record("node_started", {"address": cfg.advertise_address}, hlc=self.hlc.now())

    async def history(
        self, limit: int = 100, kinds: Collection[str] | None = None
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` journal rows (only ``kinds`` if given), newest first.

        JournalError if this node keeps no journal (no data_dir, or --no-journal).
        """
        if self.journal is None:
            why = "no data_dir" if self.config.data_dir is None else "--no-journal"
            raise JournalError(f"this node keeps no journal ({why})")
        return await self.journal.history(limit, kinds)

    async def _run_journal(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        if self.journal is None:
            task_status.started()
            await trio.sleep_forever()
        await self.journal.run(task_status=task_status)

    def _on_breaker(self, name: str, transition: Any) -> None:
        self.detector.record(
            "breaker",
            {
                "peer": name,
                "from": str(transition.from_state),
                "to": str(transition.to_state),
                "reason": transition.reason,
            },
        )

    def _journal_algedonic(self, event: Event) -> None:
        kind = "algedonic_sent" if event.source == self.name else "algedonic_received"
        self.detector.record(
            kind,
            {"type": event.type, "source": event.source, "hlc": str(event.hlc), "data": event.data},
        )

    # --- discovery --------------------------------------------------------------------

    def _check_discovery(self) -> dict[str, Any]:
        """Options for the configured discovery, validated now rather than at run time."""
        cfg = self.config
        opts = dict(cfg.discovery_options)
        if cfg.discovery == "gossip":
            opts.update(cluster=cfg.cluster, node=cfg.name, cookie=cfg.cookie)
            open_datagram = getattr(self.transport, "open_datagram", None)
            if open_datagram is not None and "socket_factory" not in opts:
                opts["socket_factory"] = _sim_gossip_socket(open_datagram, opts)
            make_discovery("gossip", address=cfg.advertise or "127.0.0.1:1", **opts)
        elif cfg.discovery == "dns":
            make_discovery("dns", **opts)
        elif cfg.discovery == "static":
            make_discovery("static", hosts=list(cfg.seeds))
        return opts

    async def _run_discovery(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Feed discovered addresses to the bridge (static seeds are dialed directly)."""
        cfg = self.config
        if cfg.discovery == "static":
            task_status.started()
            await trio.sleep_forever()
        opts = dict(self._discovery_options)
        if cfg.discovery == "gossip":
            opts["address"] = self.address
        self.discovery = make_discovery(cfg.discovery, **opts)
        await self.discovery.run(self.bridge.discovered, task_status=task_status)

    # --- lifecycle ---------------------------------------------------------------------

    def _on_supervisor_event(self, kind: str, name: str, exc: BaseException | None) -> None:
        if exc is not None:
            log.error("component %s %s: %r", name, kind, exc)
        else:
            log.debug("component %s %s", name, kind)

    async def _run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.supervisor.run(task_status=task_status)


def _operator() -> str:
    """``user@host`` of whoever runs this process: the default operator name."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "operator"
    return f"{user}@{socket.gethostname()}"


def _sim_gossip_socket(open_datagram: Any, opts: dict[str, Any]) -> Any:
    """Gossip over the simulated network's datagrams (tests and --demo)."""
    group = opts.get("group", DEFAULT_GOSSIP_GROUP)
    port = opts.get("port", DEFAULT_GOSSIP_PORT)

    async def factory() -> Any:
        sock = await open_datagram(port)
        sock.join_group(group)
        return sock

    return factory


@asynccontextmanager
async def open_node(config: NodeConfig, *, transport: Any = None) -> AsyncIterator[Node]:
    """Start a node, yield it once it listens, and on exit say BYE and stop it.

    A single error (from the body, or the node's own, e.g. EscalationError
    after a crash loop) comes out as itself, not wrapped in an exception group.
    """
    if not isinstance(config, NodeConfig):
        raise ConfigError(f"open_node needs a NodeConfig, got {type(config).__name__}")
    node = Node(config, transport=transport)
    node.open_storage()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node._run)
            try:
                yield node
            finally:
                with trio.CancelScope(shield=True):
                    await node.bridge.shutdown()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from leaves[0].__cause__
        raise
    finally:
        if node.journal is not None:
            node.journal.close()


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out
