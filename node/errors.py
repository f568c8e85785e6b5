"""Every error the node raises, in one place.

Names end in ``Error``; messages say what was wrong and how big, and whose
fault it is where that matters (a remote peer's bad bytes are a
``ProtocolError``; our own misuse or bad settings are a ``ConfigError``).
"""

from __future__ import annotations


class VsmError(Exception):
    """Base class of every error vsm-console raises on purpose."""


# --- configuration -------------------------------------------------------


class ConfigError(VsmError, ValueError):
    """A setting is invalid (bad config file, flag, env var or argument).

    ``key`` names the setting (``"quotas.s1_operational"``) when known, so
    callers never recover it from the message text.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class NotBuiltError(VsmError, NotImplementedError):
    """A subsystem that is not built yet was asked for.

    Raised instead of returning made-up numbers.
    """


# --- local misuse of the API (our caller's fault, not a peer's) ---------------


class InvalidEventError(VsmError, ValueError):
    """An event type or payload given to ``publish``/``send`` is not acceptable.

    The local counterpart of InvalidMessageError, which is kept for what a
    peer sent (h11's LocalProtocolError / RemoteProtocolError split).
    """


# --- delivery --------------------------------------------------------------------


class BackpressureTimeout(VsmError, TimeoutError):
    """``send()`` or ``flush()`` waited longer than allowed for peers to catch up."""


class ConnectionClosedError(VsmError):
    """A stream ended or broke (not a protocol violation)."""


class ListenError(VsmError, OSError):
    """This node cannot listen where it was told to (in use, not local, unresolvable).

    The message names the address and the cause in one line; it is a setting
    or the host's state, never worth a restart (the node's supervisor gives up
    at once). An ``OSError`` too, for callers that catch socket errors.
    """


class TelemetryError(VsmError, ValueError):
    """Telemetry misuse: a handler id attached twice, an event name that is not a tuple."""


# --- clocks ----------------------------------------------------------------


class ClockError(VsmError):
    """Base class of hybrid logical clock errors."""


class ClockOffsetError(ClockError):
    """A remote timestamp is further ahead of our wall clock than allowed."""


class ClockOverflowError(ClockError):
    """The logical counter would pass its bound (wall clock stuck far behind)."""


# --- wire protocol -----------------------------------------------------------


class ProtocolError(VsmError):
    """Bytes or messages from a peer break the protocol.

    Every problem found while decoding untrusted input is a subclass of this,
    so a reader task needs exactly one ``except ProtocolError``.
    """


class FrameTooLargeError(ProtocolError):
    """A length prefix announces a frame larger than ``max_frame``."""


class ForgedFrameError(ProtocolError):
    """A frame after the handshake failed its tag: forged, replayed, reordered or
    dropped on the way. Nothing later on that connection can verify: close it."""


class MalformedFrameError(ProtocolError):
    """A frame's payload is not one valid msgpack object."""


class LimitExceededError(ProtocolError):
    """A decoded value exceeds a limit (nesting depth, string, list or map size)."""


class InvalidMessageError(ProtocolError):
    """A message has the wrong shape or field types."""


class UnknownMessageError(ProtocolError):
    """A message kind this version does not know."""


class HandshakeError(ProtocolError):
    """The handshake failed (version, cluster, name, cookie, timeout...).

    ``kind`` is a short machine-readable cause ("auth_failed", "wrong_cluster",
    "handshake_timeout", ...) for counters; the message is for people.
    """

    def __init__(self, message: str, *, kind: str = "handshake_failed") -> None:
        super().__init__(message)
        self.kind = kind


class AuthenticationError(HandshakeError):
    """The peer could not prove it knows the cluster cookie."""

    def __init__(self, message: str, *, kind: str = "auth_failed") -> None:
        super().__init__(message, kind=kind)


# --- partitions ----------------------------------------------------------------


class PartitionConfigError(ConfigError):
    """A partition strategy is configured so that it could pick two winners."""


class ResolutionError(VsmError, ValueError):
    """An operator's resolution cannot be applied (e.g. names nodes of two sides)."""


class DegradedError(VsmError):
    """This node is outside the surviving side: it may not originate governance.

    ``channel`` is the refused channel's name, ``since`` the wall time (epoch
    seconds) the node became degraded, ``reason`` why.
    """

    def __init__(self, message: str, *, channel: str, since: float, reason: str) -> None:
        super().__init__(message)
        self.channel = channel
        self.since = since
        self.reason = reason


# --- persistence -----------------------------------------------------------------


class JournalError(VsmError):
    """The journal or state file in data_dir is corrupt, unreadable or unwritable."""


# --- supervision ---------------------------------------------------------------


class EscalationError(VsmError):
    """A supervised component restarted too often; the node gives up."""
