"""TcpTransport over real loopback TCP (127.0.0.1, ::1), with and without TLS.

Certificates come from trustme. Every test runs under ``trio.fail_after`` so a
hang fails fast; the one about timeouts uses the autojump clock instead of waiting.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
import trustme

from node.config import NodeConfig, TlsConfig, parse_address
from node.errors import ConfigError
from node.runtime.transport import (
    MultiListener,
    TcpTransport,
    Transport,
    make_ssl_contexts,
    make_transport,
)

pytestmark = pytest.mark.trio

TIMEOUT = 10


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def _echo_once(
    listener: trio.abc.Listener[trio.abc.Stream], accepted: list[trio.abc.Stream]
) -> None:
    stream = await listener.accept()
    accepted.append(stream)
    async with stream:
        data = await stream.receive_some()
        await stream.send_all(data.upper())


async def _roundtrip(transport: Transport, listen: str = "127.0.0.1:0") -> list[trio.abc.Stream]:
    """Echo one message through ``transport``; return [server stream, client stream]."""
    accepted: list[trio.abc.Stream] = []
    with trio.fail_after(TIMEOUT):
        listener, address = await transport.listen(listen)
        async with listener, trio.open_nursery() as nursery:
            nursery.start_soon(_echo_once, listener, accepted)
            stream = await transport.connect(address)
            async with stream:
                await stream.send_all(b"hello")
                assert await stream.receive_some() == b"HELLO"
    return [accepted[0], stream]


def _socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType:
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    assert isinstance(stream, trio.SocketStream)
    return stream.socket


# --- plain TCP -------------------------------------------------------------------


async def test_tcp_echo_on_port_zero() -> None:
    transport = TcpTransport()
    with trio.fail_after(TIMEOUT):
        listener, address = await transport.listen("127.0.0.1:0")
        await listener.aclose()
    host, port = parse_address(address)
    assert host == "127.0.0.1"
    assert port != 0
    await _roundtrip(transport)


async def test_tcp_nodelay_on_both_ends() -> None:
    accepted: list[trio.abc.Stream] = []
    transport = TcpTransport()
    with trio.fail_after(TIMEOUT):
        listener, address = await transport.listen("127.0.0.1:0")
        async with listener:
            client = await transport.connect(address)
            server = await listener.accept()
            accepted.append(server)
            async with client, server:
                for stream in (client, server):
                    sock = _socket_of(stream)
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@pytest.mark.skipif(not _ipv6_loopback(), reason="IPv6 loopback ::1 not available here")
async def test_tcp_echo_on_ipv6_loopback() -> None:
    transport = TcpTransport()
    with trio.fail_after(TIMEOUT):
        listener, address = await transport.listen("[::1]:0")
        await listener.aclose()
    assert address.startswith("[::1]:")
    assert parse_address(address)[1] != 0
    await _roundtrip(transport, "[::1]:0")


async def test_connect_refused_is_connection_refused_error() -> None:
    transport = TcpTransport()
    with trio.fail_after(TIMEOUT):
        listener, address = await transport.listen("127.0.0.1:0")
        await listener.aclose()  # nobody listens there now
        with pytest.raises(ConnectionRefusedError, match=address):
            await transport.connect(address)


async def test_connect_timeout_becomes_timeout_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    started: list[tuple[str, int]] = []

    async def never_connects(host: str, port: int) -> trio.abc.Stream:
        started.append((host, port))
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    transport = TcpTransport(connect_timeout_s=2.5, open_stream=never_connects)
    with trio.fail_after(TIMEOUT):
        before = trio.current_time()
        with pytest.raises(TimeoutError, match=r"127\.0\.0\.1:7401 timed out after 2\.5 s"):
            await transport.connect("127.0.0.1:7401")
        assert trio.current_time() - before == pytest.approx(2.5)
    assert started == [("127.0.0.1", 7401)]


async def test_bad_address_is_config_error() -> None:
    transport = TcpTransport()
    with trio.fail_after(TIMEOUT):
        with pytest.raises(ConfigError):
            await transport.connect("no-port")
        with pytest.raises(ConfigError):
            await transport.listen("::1:0")


async def test_connect_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="connect_timeout_s"):
        TcpTransport(connect_timeout_s=0)


async def test_localhost_port_zero_gives_one_dialable_address() -> None:
    # localhost may resolve to 127.0.0.1 and ::1; port 0 gives each its own
    # port, and only the first one's listeners are kept.
    await _roundtrip(TcpTransport(), "localhost:0")


async def test_multi_listener_accepts_from_every_listener() -> None:
    transport = TcpTransport()
    with trio.fail_after(TIMEOUT):
        first, address_1 = await transport.listen("127.0.0.1:0")
        second, address_2 = await transport.listen("127.0.0.1:0")
        multi = MultiListener([first, second])
        async with multi:
            clients = [await transport.connect(a) for a in (address_2, address_1, address_2)]
            # Let all three connections land in the kernel's backlogs first, so one
            # accept() can find two ready at once and must queue the spare.
            await trio.testing.wait_all_tasks_blocked()
            servers = [await multi.accept() for _ in clients]
            for i, client in enumerate(clients):
                await client.send_all(bytes([i]))
            got = sorted([(await s.receive_some())[0] for s in servers])
            assert got == [0, 1, 2]
            for stream in (*clients, *servers):
                await stream.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await multi.accept()


async def test_multi_listener_needs_listeners() -> None:
    with pytest.raises(ValueError):
        MultiListener([])


# --- TLS ---------------------------------------------------------------------------


class Pki:
    """A CA and node certificates written to files, as a deployment would have them."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = trustme.CA()
        self.ca_path = self._write("ca.pem", self.ca.cert_pem.bytes())

    def _write(self, name: str, data: bytes) -> str:
        path = self.dir / name
        path.write_bytes(data)
        return str(path)

    def node(
        self,
        name: str,
        *,
        ca: str | None = None,
        require_client_cert: bool = False,
        server_hostname: str | None = None,
    ) -> TlsConfig:
        cert = self.ca.issue_cert(name)
        chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        return TlsConfig(
            cert=self._write(f"{name}.crt", chain),
            key=self._write(f"{name}.key", cert.private_key_pem.bytes()),
            ca=self.ca_path if ca is None else ca,
            require_client_cert=require_client_cert,
            server_hostname=server_hostname,
        )


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def _tls_transport(tls: TlsConfig) -> TcpTransport:
    return make_transport(NodeConfig(name="t", cookie="s3cret-cookie-123", tls=tls))


async def test_tls_server_auth_echo(pki: Pki) -> None:
    transport = _tls_transport(pki.node("node-a"))
    server, client = await _roundtrip(transport)
    assert isinstance(server, trio.SSLStream)
    assert isinstance(client, trio.SSLStream)
    assert client.version() in ("TLSv1.2", "TLSv1.3")


async def test_tls_checks_host_name_only_when_asked(pki: Pki) -> None:
    # The certificate is for "node-a"; the connection goes to 127.0.0.1.
    server = _tls_transport(pki.node("node-a"))
    assert server.server_ssl is not None
    good = TcpTransport(
        client_ssl=make_ssl_contexts(pki.node("c1", server_hostname="node-a"))[1],
        server_hostname="node-a",
    )
    bad = TcpTransport(
        client_ssl=make_ssl_contexts(pki.node("c2", server_hostname="node-b"))[1],
        server_hostname="node-b",
    )
    with trio.fail_after(TIMEOUT):
        listener, address = await server.listen("127.0.0.1:0")
        async with listener, trio.open_nursery() as nursery:
            nursery.start_soon(_echo_once, listener, [])
            async with await good.connect(address) as stream:
                await stream.send_all(b"x")
                assert await stream.receive_some() == b"X"
            nursery.start_soon(_fail_handshake, listener)
            with pytest.raises(ssl.SSLCertVerificationError, match=address):
                await bad.connect(address)


async def _fail_handshake(listener: trio.abc.Listener[trio.abc.Stream]) -> None:
    stream = await listener.accept()
    with pytest.raises(trio.BrokenResourceError):
        await stream.receive_some()
    await trio.aclose_forcefully(stream)


async def test_tls_mutual_auth_echo(pki: Pki) -> None:
    transport = _tls_transport(pki.node("node-a", require_client_cert=True))
    server, _client = await _roundtrip(transport)
    assert isinstance(server, trio.SSLStream)
    peer_cert = server.getpeercert()
    assert peer_cert is not None
    assert ("DNS", "node-a") in peer_cert["subjectAltName"]


async def test_tls_client_with_wrong_ca_fails_at_connect(pki: Pki, tmp_path: Path) -> None:
    server = _tls_transport(pki.node("node-a"))
    (tmp_path / "other").mkdir()
    other = Pki(tmp_path / "other")
    stranger = _tls_transport(other.node("node-b"))
    with trio.fail_after(TIMEOUT):
        listener, address = await server.listen("127.0.0.1:0")
        async with listener, trio.open_nursery() as nursery:
            nursery.start_soon(_fail_handshake, listener)
            with pytest.raises(ssl.SSLCertVerificationError, match=f"TLS handshake with {address}"):
                await stranger.connect(address)


async def test_tls_client_without_cert_rejected_when_required(pki: Pki) -> None:
    server = _tls_transport(pki.node("node-a", require_client_cert=True))
    anonymous = ssl.create_default_context(cafile=pki.ca_path)
    anonymous.check_hostname = False
    client = TcpTransport(client_ssl=anonymous)
    with trio.fail_after(TIMEOUT):
        listener, address = await server.listen("127.0.0.1:0")
        async with listener, trio.open_nursery() as nursery:
            nursery.start_soon(_fail_handshake, listener)
            # TLS 1.2 fails inside connect; under TLS 1.3 the server's verdict
            # arrives after the client's handshake, on its first read.
            with pytest.raises((ssl.SSLError, trio.BrokenResourceError)):
                stream = await client.connect(address)
                async with stream:
                    await stream.send_all(b"hello")
                    await stream.receive_some()


async def test_tls_plain_client_cannot_talk_to_tls_server(pki: Pki) -> None:
    server = _tls_transport(pki.node("node-a"))
    with trio.fail_after(TIMEOUT):
        listener, address = await server.listen("127.0.0.1:0")
        async with listener, trio.open_nursery() as nursery:
            nursery.start_soon(_fail_handshake, listener)
            stream = await TcpTransport().connect(address)
            async with stream:
                await stream.send_all(b"not a TLS client hello\r\n" * 4)
                # The server hangs up (maybe with an alert first); _fail_handshake
                # asserts its side failed.
                with contextlib.suppress(trio.BrokenResourceError):
                    while await stream.receive_some():
                        pass


async def test_make_ssl_contexts_settings(pki: Pki) -> None:
    server, client = make_ssl_contexts(pki.node("node-a", require_client_cert=True))
    assert server.minimum_version == ssl.TLSVersion.TLSv1_2
    assert client.minimum_version == ssl.TLSVersion.TLSv1_2
    assert server.verify_mode == ssl.CERT_REQUIRED
    assert client.verify_mode == ssl.CERT_REQUIRED
    assert client.check_hostname is False
    server, client = make_ssl_contexts(pki.node("node-b", server_hostname="node-b"))
    assert server.verify_mode == ssl.CERT_NONE
    assert client.check_hostname is True


@pytest.mark.parametrize("missing", ["cert", "key", "ca"])
async def test_make_ssl_contexts_missing_file(pki: Pki, missing: str) -> None:
    tls = pki.node("node-a")
    gone = str(pki.dir / f"missing-{missing}.pem")
    changed = TlsConfig(**{**_fields(tls), missing: gone})
    with pytest.raises(ConfigError, match=f"tls.{missing} '{gone}': no such file"):
        make_ssl_contexts(changed)


async def test_make_ssl_contexts_bad_pem(pki: Pki) -> None:
    tls = pki.node("node-a")
    junk = pki.dir / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"tls\.cert"):
        make_ssl_contexts(TlsConfig(**{**_fields(tls), "cert": str(junk)}))
    with pytest.raises(ConfigError, match=r"tls\.ca"):
        make_ssl_contexts(TlsConfig(**{**_fields(tls), "ca": str(junk)}))


async def test_make_ssl_contexts_key_of_other_cert(pki: Pki) -> None:
    a, b = pki.node("node-a"), pki.node("node-b")
    with pytest.raises(ConfigError, match="cannot load the certificate and key"):
        make_ssl_contexts(TlsConfig(cert=a.cert, key=b.key, ca=a.ca))


async def test_make_transport_without_tls() -> None:
    transport = make_transport(
        NodeConfig(name="t", cookie="s3cret-cookie-123", connect_timeout_s=1.5)
    )
    assert transport.server_ssl is None
    assert transport.client_ssl is None
    assert transport.connect_timeout_s == 1.5


def _fields(tls: TlsConfig) -> dict[str, Any]:
    return attrs.asdict(tls)
