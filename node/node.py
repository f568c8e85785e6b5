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
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from node.config import NodeConfig
from node.core.events import (
    _SCALAR_TYPES,
    Channel,
    Classifier,
    Event,
    check_data,
    check_event_type,
)
from node.core.hlc import HLC
from node.core.variety import VarietyManager, pressure_level
from node.core.wire import Algedonic, AlgedonicAck
from node.delivery import Callback, LocalDelivery, Subscription
from node.errors import (
    ConfigError,
    InvalidEventError,
    JournalError,
    ListenError,
    ProtocolError,
)
from node.runtime.algedonic import AlgedonicBroadcast
from node.runtime.bridge import ClusterBridge
from node.runtime.busypoll import yielding_when_busy
from node.runtime.detector import PartitionDetector
from node.runtime.discovery import DEFAULT_GOSSIP_GROUP, DEFAULT_GOSSIP_PORT, make_discovery
from node.runtime.flow import CHECK_EVERY
from node.runtime.journal import JOURNAL_FILE, STATE_FILE, Journal, StateFile
from node.runtime.replication import STAGE_MAX
from node.runtime.supervisor import Component, Supervisor
from node.runtime.transport import make_transport
from node.telemetry import (
    BREAKER_EVENTS,
    NODE_CONNECTED,
    NODE_DISCONNECTED,
    StateWatcher,
    Telemetry,
)

log = logging.getLogger("vsm.node")

_MAX_KNOWN_TYPES = 10_000
_new = tuple.__new__  # builds the Event without its generated __new__ (a Python frame)
# Governance channels, looked up once: an Enum member read from its class costs
# about 0.14 µs in Python 3.11, and publish asks for two per event.
_S3, _S5 = Channel.S3_CONTROL, Channel.S5_POLICY
_ALGEDONIC = Channel.ALGEDONIC


def _checked_copy(data: object) -> dict[str, Any]:
    """A copy of a payload that is not a flat map of scalars, checked in full."""
    try:
        return dict(check_data(data))
    except ProtocolError as exc:
        raise InvalidEventError(str(exc)) from None


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
        self.local = LocalDelivery(self.classify)
        # publish looks a type's route up here first (nobody subscribed: no call)
        self._routes = self.local.routes
        self._dispatch, self._dispatch_many = self.local.dispatch, self.local.dispatch_many
        # event types already checked, with their channel (bounded: a producer
        # inventing types without end must not grow memory without end)
        self._types: dict[str, Channel] = {}
        self.telemetry = Telemetry()
        # built before the bridge, which gets its handlers
        self.algedonic = AlgedonicBroadcast(
            config,
            hlc=self.hlc,
            transport=self.transport,
            deliver=self._dispatch,
            links=lambda: self.bridge,
        )
        # broadcast_latency and confirmation feed node.telemetry (and so /metrics)
        self.algedonic.telemetry.append(self.telemetry.emit)
        # Collaborators are wired at construction and data flows one way: the
        # detector and the algedonic broadcast read the bridge through a
        # callable; the bridge gets their handlers and callbacks here.
        self.detector = PartitionDetector(
            config,
            lambda: self.bridge,
            health=self._health_figures,  # heartbeats carry numbers only
            alarm=self.algedonic.partition_alarm,  # a confirmed scream
            stamp=self.hlc.now,
            announce=lambda kind, data: self.publish(kind, data),
        )
        self.bridge = ClusterBridge(
            config,
            transport=self.transport,
            hlc=self.hlc,
            variety=self.variety,
            deliver=self._dispatch,
            deliver_many=self._dispatch_many,
            incarnation=self.incarnation,
            heartbeat_factory=self.detector.make_heartbeat,
            handlers={
                **self.detector.handlers(),
                Algedonic: self.algedonic.on_signal,
                AlgedonicAck: self.algedonic.on_ack,
            },
            on_peer_change=self._on_peer_change,
            on_breaker=self._on_breaker,
            signal_session=self.algedonic.serve_signal_connection,
            datagrams=self.algedonic.datagrams.open,  # bound before the first HELLO
            urgent=self.algedonic.datagrams.poll,  # alarms and their acks between frames
        )
        self._replication = self.bridge.replication
        self._flow = self._replication.flow
        # Persistence in data_dir (issue 10): opened by open_node, see open_storage().
        self.journal: Journal | None = None
        self.subscribe(Channel.ALGEDONIC, self._journal_algedonic)
        self.discovery: Any = None
        self._discovery_options = self._check_discovery()
        # rest_for_one order: a crash restarts that component and all after it.
        # The bridge binds the algedonic datagram socket (before any HELLO, which
        # advertises its port) and holds it; the receiving component comes after.
        self.supervisor = Supervisor(
            [
                Component("journal", self._run_journal),
                Component("partition_detector", self.detector.run),
                Component("variety", self.bridge.replication.run_variety),
                Component("algedonic", self.algedonic.run),
                Component("bridge", self.bridge.run),
                Component("algedonic_datagrams", self.algedonic.datagrams.run),
                Component("discovery", self._run_discovery),
                Component("telemetry", self._run_telemetry),
            ],
            on_event=self._on_supervisor_event,
            permanent=(ListenError,),  # issue 11: a port in use is not worth a restart
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
            try:
                check_event_type(key)
            except ProtocolError as exc:
                raise InvalidEventError(str(exc)) from None
        return self.local.subscribe(key, callback)

    @property
    def delivery_errors(self) -> int:
        """Exceptions raised by subscriber callbacks (each logged, never propagated)."""
        return self.local.errors

    def publish(self, event_type: str, data: Mapping[str, Any] | None = None) -> Event:
        """Stamp, deliver locally, and replicate (subject to variety control).

        Never waits and never raises for a full queue: what a peer's queue
        cannot hold is counted as dropped (``variety_stats()``). Use
        :meth:`send` to wait for slow peers instead. InvalidEventError for a
        bad type or payload.
        """
        try:
            channel = self._types.get(event_type)
        except TypeError:  # unhashable: not a valid type, _learn_type says why
            channel = None
        if channel is None:
            channel = self._learn_type(event_type)
        if type(data) is dict:
            # check_data's fast path, inlined (it runs once per event): a flat
            # map of scalars, checked on our own copy.
            payload = data.copy()
            for key, value in payload.items():
                if type(key) is not str or type(value) not in _SCALAR_TYPES:
                    payload = _checked_copy(payload)
                    break
        else:
            payload = _checked_copy({} if data is None else data)
        if channel is _S3 or channel is _S5:
            # governance is never originated outside the surviving side (DegradedError)
            self.detector.check_may_originate(channel)
        event = _new(Event, (event_type, channel, payload, self.name, self.hlc.now(), 0, False))
        route = self._routes.get(event_type)
        if route is None or route[0] is not channel or route[1]:
            self._dispatch_many((event,))  # else nobody here subscribes to it
        replication = self._replication
        if replication.stage_open and channel is not _ALGEDONIC:
            # A writer will run before this event could leave anyway: admit and
            # queue it with the others published meanwhile (drain_stage).
            staged = replication.staged
            staged.append(event)
            if len(staged) >= STAGE_MAX:
                replication.drain_stage()
        else:
            replication.replicate(event)  # alarms never wait in the stage
        return event

    def _learn_type(self, event_type: object) -> Channel:
        """The channel of an event type seen for the first time (remembered);
        InvalidEventError for a bad type."""
        try:
            check_event_type(event_type)
        except ProtocolError as exc:
            raise InvalidEventError(str(exc)) from None
        assert isinstance(event_type, str)
        channel = self.classify(event_type)
        if len(self._types) < _MAX_KNOWN_TYPES:
            self._types[event_type] = channel
        return channel

    async def send(
        self,
        event_type: str,
        data: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the API the issue specifies
    ) -> Event:
        """Publish, then wait while the slowest connected member lags behind.

        Returns at once while every connected member's queue (events not yet
        acknowledged) is at most ``send_high_water`` (looked at every 128 sends,
        so it may be passed by that many, and whenever the event woke the writer
        of an idle link); above it, waits until it is below ``send_low_water``.
        Observers and unreachable peers never make it wait (their events wait
        in the backlog). BackpressureTimeout after
        ``timeout`` seconds (default: the ``send_timeout_s`` setting); the
        event was published all the same.
        """
        event = self.publish(event_type, data)
        flow = self._flow
        flow.unchecked += 1  # see flow.CHECK_EVERY
        if flow.unchecked >= CHECK_EVERY or flow.woke:
            wait = self.config.send_timeout_s if timeout is None else timeout
            await flow.wait_for_room(wait)
        # else: no checkpoint at all (0.3 µs even for checkpoint_if_cancelled):
        # one in 128 sends, or one that woke an idle link's writer, is a full checkpoint.
        return event

    async def flush(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until every connected peer has acknowledged everything queued for it.

        BackpressureTimeout after ``timeout`` seconds (None: no limit). Peers
        that are not connected are not waited for.
        """
        await self._flow.flush(timeout)

    # --- views ----------------------------------------------------------------------

    def variety_stats(self) -> dict[str, Any]:
        """Per channel (variety manager) and per peer (offered == sent + ... ) figures."""
        self._replication.drain_stage()  # what publish staged counts as offered
        bridge = self.bridge.stats()
        return {"channels": self.variety.stats(), **bridge, "algedonic": self.algedonic.stats()}

    def variety_pressure(self) -> dict[str, Any]:
        """Pressure per channel in [0, 1], the overall figure and its level."""
        self._replication.drain_stage()
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
        self._replication.drain_stage()
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
        return {**report, "algedonic": self.algedonic.stats()}

    def _health_figures(self) -> dict[str, float]:
        """health_report() without the nested sections: what heartbeats carry."""
        return {k: v for k, v in self.health_report().items() if isinstance(v, float)}

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

    def peer_report(self) -> dict[str, Any]:
        """Per peer, what an operator watches: breaker, phi, queue and reported health.

        Read from counters the runtime keeps anyway (no walk over queued
        events). ``round_trip_ms``: from a frame written to the ack that covers
        it, smoothed (None until events have gone both ways).
        ``health`` is the overall figure from the peer's last heartbeat.
        """
        self._replication.drain_stage()
        now = trio.current_time()
        peers: dict[str, Any] = {}
        for name, peer in sorted(self.bridge.peers.items()):
            breaker = peer.breaker
            transitions = breaker.transitions
            since = transitions[-1].at if transitions else peer.connected_since
            until = breaker.open_until
            det = self.detector.phi.get(name)
            view = self.detector.views.get(name)
            rate = breaker.failure_rate
            peers[name] = {
                "connected": peer.connected,
                "departed": peer.departed,
                "role": peer.role,
                "breaker": str(breaker.state(now)),
                "failure_rate": None if rate is None else round(rate, 4),
                "consecutive_failures": breaker.failures_in_a_row,
                "in_state_s": None if since is None else round(now - since, 3),
                "retry_in_s": None if until is None else round(max(0.0, until - now), 3),
                "phi": (
                    round(det.phi(now * 1000.0), 3)
                    if det is not None and det.is_monitoring
                    else None
                ),
                "round_trip_ms": (
                    None if peer.round_trip_s is None else round(peer.round_trip_s * 1000.0, 3)
                ),
                "queued": peer.outbox.queued,
                "backlog": peer.outbox.backlogged,
                "health": None if view is None else view.health.get("overall"),
            }
        return {"node": self.name, "hlc": str(self.hlc.last), "peers": peers}

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
        """Broadcast an alarm to every member and wait for their confirmations.

        ``data``: ``{"type": "pain" | "pleasure" | "emergency", "severity": 1-10,
        "source": str, "data": {...}}``; ValueError naming the field otherwise.
        Returns ``{"id", "directive", "confirmed", "failed", "latency_ms",
        "attempts"}``; never waits longer than the retries allow (under 0.4 s).
        """
        return await self.algedonic.scream(data)

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

    def _journal_breaker(self, name: str, transition: Any) -> None:
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
        if self.detector.journal is None:
            return  # no data_dir: nothing to write, so nothing to build (an alarm's path)
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
        if isinstance(exc, ListenError):  # raised to the caller, which reports it once
            log.debug("component %s %s: %s", name, kind, exc)
        elif exc is not None:
            log.error("component %s %s: %r", name, kind, exc)
        else:
            log.debug("component %s %s", name, kind)

    # --- telemetry (issue 11) -------------------------------------------------------------

    def _on_peer_change(self, peer: str, connected: bool) -> None:
        self.detector.on_peer_change(peer, connected)  # journal; our decision to a newcomer
        name = NODE_CONNECTED if connected else NODE_DISCONNECTED
        self.telemetry.emit(name, {"count": 1}, {"node": self.name, "peer": peer})

    def _on_breaker(self, peer: str, transition: Any) -> None:
        self._journal_breaker(peer, transition)
        name = BREAKER_EVENTS.get(str(transition.to_state))
        if name is not None:
            meta = {
                "node": self.name,
                "peer": peer,
                "from": str(transition.from_state),
                "reason": transition.reason,
            }
            self.telemetry.emit(name, {"count": 1}, meta)

    async def _run_telemetry(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Emit variety and partition events from state, once per check interval."""
        watcher = StateWatcher(self.telemetry)
        task_status.started()
        while True:
            await trio.sleep(self.config.check_interval_s)
            self._replication.drain_stage()
            watcher.observe(self.variety.stats(), self.partition_status())

    async def _run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        # A loop busy without pause offers the CPU to other processes now and
        # then (node.runtime.busypoll): one of them may hold an alarm.
        with yielding_when_busy():
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
