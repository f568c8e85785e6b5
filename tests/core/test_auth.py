"""Session keys and frame tags: forged, replayed, reordered frames fail."""

from __future__ import annotations

from node.core.auth import TAG_SIZE, FrameOpener, frame_tag, session_keys


def keys(cookie: str = "a-cookie-of-16-bytes", nonce: bytes = b"n" * 16):  # type: ignore[no-untyped-def]
    return session_keys(
        cookie,
        cluster="vsm",
        initiator="a",
        responder="b",
        initiator_nonce=nonce,
        responder_nonce=b"r" * 16,
    )


def test_both_sides_agree_and_directions_differ() -> None:
    k = keys()
    a_out, b_in = k.sealer(initiator=True), k.opener(initiator=False)
    b_out, a_in = k.sealer(initiator=False), k.opener(initiator=True)
    assert b_in.open(a_out.seal(b"hello")) == b"hello"
    assert a_in.open(b_out.seal(b"back")) == b"back"
    assert k.initiator_to_responder != k.responder_to_initiator
    # a frame reflected back to its sender does not verify
    reflected = keys().sealer(initiator=True).seal(b"x")
    assert keys().opener(initiator=True).open(reflected) is None


def test_keys_depend_on_cookie_and_nonces() -> None:
    assert keys() == keys()
    assert keys("another-cookie-16b") != keys()
    assert keys(nonce=b"m" * 16) != keys()


def test_forged_replayed_reordered_and_truncated_frames_fail() -> None:
    k = keys()
    sealer = k.sealer(initiator=True)
    f0, f1, f2 = (sealer.seal(p) for p in (b"zero", b"one", b"two"))
    # forged: a payload with a made-up tag
    assert k.opener(initiator=False).open(b"evil" + b"\0" * TAG_SIZE) is None
    # tampered: one bit flipped
    assert k.opener(initiator=False).open(bytes([f0[0] ^ 1]) + f0[1:]) is None
    # replayed
    opener = k.opener(initiator=False)
    assert opener.open(f0) == b"zero"
    assert opener.open(f0) is None
    # and once failed, it stays failed (the stream is out of step)
    assert opener.open(f1) is None and opener.failed
    # reordered
    opener = k.opener(initiator=False)
    assert opener.open(f1) is None
    # dropped one in the middle
    opener = k.opener(initiator=False)
    assert opener.open(f0) == b"zero"
    assert opener.open(f2) is None
    # shorter than a tag
    assert FrameOpener(b"k" * 32).open(b"short") is None


def test_tag_covers_counter_and_payload() -> None:
    assert len(frame_tag(b"k" * 32, 0, b"p")) == TAG_SIZE
    assert frame_tag(b"k" * 32, 0, b"p") != frame_tag(b"k" * 32, 1, b"p")


def test_long_frames_are_tagged_with_hmac_sha256_under_a_key_of_their_own() -> None:
    import hashlib
    import hmac

    from node.core.auth import LONG_FRAME

    key = b"k" * 32
    short, long = b"s" * (LONG_FRAME - 1), b"l" * LONG_FRAME
    blake = hashlib.blake2b(key=key, digest_size=TAG_SIZE, person=b"vsm-frames-v1")
    blake.update((3).to_bytes(8, "big") + short)
    assert frame_tag(key, 3, short) == blake.digest()
    # the long tag is HMAC-SHA256, truncated, and not under the frame key itself
    plain = hmac.new(key, (3).to_bytes(8, "big") + long, "sha256").digest()[:TAG_SIZE]
    tag = frame_tag(key, 3, long)
    assert len(tag) == TAG_SIZE and tag != plain
    assert tag != frame_tag(key, 4, long) and tag != frame_tag(b"j" * 32, 3, long)
    # sealed and opened in order, long and short mixed; a flipped bit fails
    k = keys()
    sealer, opener = k.sealer(initiator=True), k.opener(initiator=False)
    frames = [sealer.seal(p) for p in (long, short, long + b"x")]
    assert [opener.open(f) for f in frames] == [long, short, long + b"x"]
    damaged = sealer.seal(long)
    assert opener.open(damaged[:10] + bytes([damaged[10] ^ 1]) + damaged[11:]) is None
