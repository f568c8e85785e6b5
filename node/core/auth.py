"""Cookie proof for the handshake, and frame tags after it (sans-IO).

Each side proves it knows the shared cookie with HMAC-SHA256 over both
nonces and both names, in a fixed order, plus which side is speaking, so a
proof can be neither replayed on another connection nor reflected back.

Without TLS, the frames after the handshake are authenticated too: both
sides derive per-direction session keys from the cookie and what the
handshake fixed (HKDF-SHA256), and every frame carries a 16-byte tag over
its position in the stream and its payload: keyed BLAKE2b for short frames,
HMAC-SHA256 (truncated) for long ones (see LONG_FRAME).
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import attrs

_CONTEXT = b"vsm-console/auth/v1"


def auth_mac(
    cookie: str,
    *,
    cluster: str,
    initiator: str,
    responder: str,
    initiator_nonce: bytes,
    responder_nonce: bytes,
    from_initiator: bool,
) -> bytes:
    """The 32-byte proof one side sends; both sides can compute both proofs."""
    msg = b"\x00".join(
        [
            _CONTEXT,
            b"initiator" if from_initiator else b"responder",
            cluster.encode(),
            initiator.encode(),
            responder.encode(),
            initiator_nonce,
            responder_nonce,
        ]
    )
    return hmac.new(cookie.encode(), msg, hashlib.sha256).digest()


def verify_mac(expected: bytes, got: bytes) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(expected, got)


# --- frame authentication after the handshake (without TLS) -----------------------

TAG_SIZE = 16
_KDF_CONTEXT = b"vsm-console/frames/v1"
_COUNTER = struct.Struct(">Q")


def _hkdf(secret: bytes, salt: bytes, info: bytes, size: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869), stdlib only; ``size`` at most 32 (one block)."""
    prk = hmac.digest(salt, secret, "sha256")
    return hmac.digest(prk, info + b"\x01", "sha256")[:size]


@attrs.frozen
class SessionKeys:
    """One key per direction, so a frame cannot be reflected back to its sender."""

    initiator_to_responder: bytes = attrs.field(repr=False)
    responder_to_initiator: bytes = attrs.field(repr=False)

    def sealer(self, *, initiator: bool) -> FrameSealer:
        key = self.initiator_to_responder if initiator else self.responder_to_initiator
        return FrameSealer(key)

    def opener(self, *, initiator: bool) -> FrameOpener:
        key = self.responder_to_initiator if initiator else self.initiator_to_responder
        return FrameOpener(key)


def session_keys(
    cookie: str,
    *,
    cluster: str,
    initiator: str,
    responder: str,
    initiator_nonce: bytes,
    responder_nonce: bytes,
) -> SessionKeys:
    """Keys for one connection, from the cookie and everything the handshake fixed.

    Both nonces are fresh per connection, so the keys are too: frames recorded
    on one connection mean nothing on another.
    """
    salt = initiator_nonce + responder_nonce
    base = b"\x00".join([_KDF_CONTEXT, cluster.encode(), initiator.encode(), responder.encode()])
    secret = cookie.encode()
    return SessionKeys(
        _hkdf(secret, salt, base + b"\x00i2r"),
        _hkdf(secret, salt, base + b"\x00r2i"),
    )


#: Payloads from this size on are tagged with HMAC-SHA256 (truncated to
#: TAG_SIZE) instead of BLAKE2b: OpenSSL's SHA-256 runs on the CPU's SHA
#: extensions where it has them, hashlib's BLAKE2b is portable C. Per frame
#: on the 2-core VM (``python -m tests.bench.bench_frame_auth``), BLAKE2b /
#: HMAC: 113 bytes 0.7 / 1.5 µs, 1 KB 1.4 / 1.4, 20 KB 21.7 / 12.1. Both ends
#: choose by the payload's length, so they always agree.
LONG_FRAME = 1024


def frame_tag(key: bytes, counter: int, payload: bytes) -> bytes:
    """The tag of frame ``counter``: keyed BLAKE2b over (counter, payload),
    HMAC-SHA256 under a key derived from ``key`` for long payloads."""
    return _Tagger(key).tag(counter, payload)


class _Tagger:
    """The keyed states computed once per connection and copied per frame.

    BLAKE2b for short frames (lone events, acks, heartbeats): a third of
    HMAC-SHA256's cost there (0.4 against 1.3 µs); HMAC-SHA256 from
    LONG_FRAME bytes on, where it is the faster per byte.
    """

    __slots__ = ("_long", "_short")

    def __init__(self, key: bytes) -> None:
        self._short = hashlib.blake2b(key=key, digest_size=TAG_SIZE, person=b"vsm-frames-v1")
        # a key of its own: one key is never used by two algorithms
        self._long = hmac.new(_hkdf(key, b"", _KDF_CONTEXT + b"\x00long"), digestmod="sha256")

    def tag(self, counter: int, payload: bytes) -> bytes:
        h = self._short.copy() if len(payload) < LONG_FRAME else self._long.copy()
        h.update(_COUNTER.pack(counter))
        h.update(payload)
        return h.digest()[:TAG_SIZE]


@attrs.define
class FrameSealer:
    """Tags outgoing frames in order: frame n carries the tag for counter n."""

    key: bytes = attrs.field(repr=False)
    counter: int = 0
    _tagger: _Tagger = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._tagger = _Tagger(self.key)

    def seal(self, payload: bytes) -> bytes:
        """``payload`` followed by its tag."""
        tag = self._tagger.tag(self.counter, payload)
        self.counter += 1
        return payload + tag


@attrs.define
class FrameOpener:
    """Checks incoming frames in order. A frame forged, replayed, reordered or
    dropped on the way fails its tag (the counter no longer matches): the
    caller must treat the connection as lost, since nothing later can verify."""

    key: bytes = attrs.field(repr=False)
    counter: int = 0
    failed: bool = False
    _tagger: _Tagger = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._tagger = _Tagger(self.key)

    def open(self, data: bytes) -> bytes | None:
        """The payload of a sealed frame, or None if its tag does not verify."""
        if self.failed or len(data) < TAG_SIZE:
            self.failed = True
            return None
        payload, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
        if not hmac.compare_digest(tag, self._tagger.tag(self.counter, payload)):
            self.failed = True
            return None
        self.counter += 1
        return payload
