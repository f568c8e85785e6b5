"""Cookie proof for the handshake (sans-IO).

Each side proves it knows the shared cookie with HMAC-SHA256 over both
nonces and both names, in a fixed order, plus which side is speaking, so a
proof can be neither replayed on another connection nor reflected back.
"""

from __future__ import annotations

import hashlib
import hmac

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
