"""A simulated network of named hosts with per-link faults, for tests and ``--demo``.

``network`` holds the network, its transports and streams; ``datagram`` its
UDP sockets; ``links`` what both share. The public names are re-exported
here, so ``from node.sim import SimNetwork`` is the way in.
"""

from node.sim.datagram import DEFAULT_DATAGRAM_QUEUE, MAX_DATAGRAM, SimDatagramSocket
from node.sim.links import Address, LinkStats, is_multicast
from node.sim.network import (
    DEFAULT_RECEIVE_SIZE,
    DEFAULT_SEND_BUFFER,
    EPHEMERAL_PORTS,
    WILDCARD_HOSTS,
    SimListener,
    SimNetwork,
    SimStream,
    SimTransport,
)

__all__ = [
    "DEFAULT_DATAGRAM_QUEUE",
    "DEFAULT_RECEIVE_SIZE",
    "DEFAULT_SEND_BUFFER",
    "EPHEMERAL_PORTS",
    "MAX_DATAGRAM",
    "WILDCARD_HOSTS",
    "Address",
    "LinkStats",
    "SimDatagramSocket",
    "SimListener",
    "SimNetwork",
    "SimStream",
    "SimTransport",
    "is_multicast",
]
