"""What the stream and datagram halves of the simulated network share.

Addresses, the multicast test and the per-link counters live here so that
``network`` (streams, faults) and ``datagram`` (UDP) each import this module
and neither imports the other's internals back.
"""

from __future__ import annotations

import ipaddress

import attrs

Address = tuple[str, int]


def is_multicast(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_multicast
    except ValueError:
        return False


@attrs.frozen
class LinkStats:
    """Traffic from one host to another, as ``SimNetwork.stats()`` reports it.

    ``delivered`` means handed to the receiving application; ``held`` means
    sent and not yet received (in flight, stalled by a cut, or unread); ``lost``
    means dropped (streams: reset, or reached a closed reader; datagrams: cut,
    random loss, full receive queue, or nobody listening). Multicast counts one
    datagram per destination host.
    """

    bytes_sent: int = 0
    bytes_delivered: int = 0
    bytes_held: int = 0
    bytes_lost: int = 0
    datagrams_sent: int = 0
    datagrams_delivered: int = 0
    datagrams_held: int = 0
    datagrams_lost: int = 0


@attrs.define
class LinkCounters:
    """Mutable counters of one directed link (the running form of ``LinkStats``)."""

    bytes_sent: int = 0
    bytes_delivered: int = 0
    bytes_held: int = 0
    bytes_lost: int = 0
    datagrams_sent: int = 0
    datagrams_delivered: int = 0
    datagrams_held: int = 0
    datagrams_lost: int = 0
