"""The control socket: protocol and every error reply, the socket file's life and mode."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from vsmtest import cluster, full_mesh, wait_for

from node.errors import ListenError
from node.node import Node
from node.runtime.control import (
    MAX_PUBLISH_COUNT,
    ControlServer,
    bind_control,
)
from node.sim import SimNetwork

pytestmark = pytest.mark.trio


@asynccontextmanager
async def one_node() -> AsyncIterator[Node]:
    async with cluster(SimNetwork(), ["a"]) as nodes:
        yield nodes["a"]


async def ask(server: ControlServer, request: Any) -> dict[str, Any]:
    line = request if isinstance(request, bytes) else json.dumps(request).encode()
    reply = await server.handle_line(line)
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1
    decoded: dict[str, Any] = json.loads(reply)
    return decoded


def error_of(reply: dict[str, Any]) -> tuple[str, str]:
    assert reply["ok"] is False, reply
    return reply["kind"], reply["error"]


@pytest.mark.parametrize(
    ("request_", "kind", "words"),
    [
        (b"{not json", "bad_request", "malformed JSON"),
        (b"\xff\xfe", "bad_request", "malformed JSON"),
        (b"[1, 2]", "bad_request", "JSON object"),
        ({"args": {}}, "bad_request", "needs 'cmd'"),
        ({"cmd": 5}, "bad_request", "needs 'cmd'"),
        ({"cmd": "topology", "extra": 1}, "bad_request", "unknown request fields: extra"),
        ({"cmd": "topology", "args": [1]}, "bad_request", "'args' must be a JSON object"),
        ({"cmd": "topology", "args": {"x": 1}}, "bad_request", "unknown argument(s) x"),
        ({"cmd": "reboot"}, "unknown_command", "unknown command 'reboot'"),
        ({"cmd": "publish", "args": {}}, "bad_request", "needs 'type'"),
        ({"cmd": "publish", "args": {"type": "t", "data": 3}}, "bad_request", "JSON object"),
        ({"cmd": "publish", "args": {"type": "t", "count": 0}}, "bad_request", "'count'"),
        (
            {"cmd": "publish", "args": {"type": "t", "count": MAX_PUBLISH_COUNT + 1}},
            "bad_request",
            "'count'",
        ),
        ({"cmd": "publish", "args": {"type": "t", "count": True}}, "bad_request", "'count'"),
        ({"cmd": "publish", "args": {"type": ""}}, "refused", "event type must be"),
        ({"cmd": "resolve", "args": {}}, "bad_request", "needs 'keep'"),
        ({"cmd": "resolve", "args": {"keep": "a"}}, "bad_request", "needs 'keep'"),
        ({"cmd": "resolve", "args": {"keep": ["a"]}}, "refused", "cluster is healthy"),
        ({"cmd": "scream", "args": {"type": "pain", "severity": 11}}, "refused", "severity"),
        ({"cmd": "scream", "args": {"colour": "red"}}, "bad_request", "unknown argument"),
        ({"cmd": "history", "args": {}}, "not_built", "history (journal) is not built yet"),
    ],
)
async def test_error_replies(request_: Any, kind: str, words: str) -> None:
    async with one_node() as node:
        server = ControlServer(node)
        got_kind, message = error_of(await ask(server, request_))
        assert got_kind == kind
        assert words in message
        assert server.errors == {kind: 1}
        # ...and the next request on the same server is answered normally.
        assert (await ask(server, {"cmd": "ping"}))["ok"] is True


async def test_views_are_the_facades_dictionaries() -> None:
    async with one_node() as node:
        server = ControlServer(node)
        topology = (await ask(server, {"cmd": "topology"}))["result"]
        assert topology["node"] == "a" and topology["address"] == node.address
        assert (await ask(server, {"cmd": "partitions"}))["result"]["strategy"] == "static_quorum"
        health = (await ask(server, {"cmd": "health"}))["result"]
        assert health["healthy"] is True and health["health"] == node.health_report()
        variety = (await ask(server, {"cmd": "variety"}))["result"]
        assert set(variety) == {"pressure", "stats"}
        checked = (await ask(server, {"cmd": "check-partitions", "args": None}))["result"]
        assert checked["status"] in ("starting", "healthy")
        status = (await ask(server, {"cmd": "status"}))["result"]
        assert status["node"] == "a" and status["peers"] == {}
        assert (await ask(server, {"cmd": "ping"}))["result"]["pid"] == os.getpid()


async def test_publish_count_goes_through_the_node() -> None:
    async with cluster(SimNetwork(), ["a", "b"]) as nodes:
        await wait_for(lambda: full_mesh(nodes))
        got: list[Any] = []
        nodes["b"].subscribe("task_execution", got.append)
        server = ControlServer(nodes["a"])
        args = {"type": "task_execution", "data": {"n": 1}, "count": 2500}
        result = (await ask(server, {"cmd": "publish", "args": args}))["result"]
        assert result["published"] == 2500 and result["channel"] == "s1_operational"
        assert nodes["a"].variety.stats()["s1_operational"]["offered"] == 2500
        await wait_for(lambda: len(got) == nodes["a"].variety.stats()["s1_operational"]["admitted"])
        assert got and all(e.data == {"n": 1} and e.source == "a" for e in got)


async def test_history_uses_the_node_when_it_has_one() -> None:
    async with one_node() as node:
        calls: list[dict[str, Any]] = []

        async def history(**kwargs: Any) -> list[dict[str, Any]]:
            calls.append(kwargs)
            return [{"kind": "decision"}]

        node.history = history  # type: ignore[attr-defined]  # as issue 10 will add
        reply = await ask(server := ControlServer(node), {"cmd": "history", "args": {"limit": 5}})
        assert reply == {"ok": True, "result": [{"kind": "decision"}]}
        assert calls == [{"limit": 5}]
        assert server.errors == {}


async def test_internal_errors_are_reported_not_raised() -> None:
    async with one_node() as node:
        server = ControlServer(node)

        async def broken(args: Any) -> Any:
            raise KeyError("oops")

        server.commands["broken"] = broken
        kind, message = error_of(await ask(server, {"cmd": "broken"}))
        assert kind == "internal" and "KeyError" in message


def exists(path: str) -> bool:
    return os.path.exists(path)


def replace_with_file(path: str) -> None:
    os.unlink(path)
    Path(path).write_text("not a socket")


# --- over the socket -----------------------------------------------------------------------


async def converse(path: str, lines: list[bytes]) -> list[dict[str, Any]]:
    stream = await trio.open_unix_socket(path)
    replies: list[dict[str, Any]] = []
    buffer = b""
    async with stream:
        for line in lines:
            await stream.send_all(line)
        while len(replies) < sum(1 for line in lines if line.endswith(b"\n")):
            data = await stream.receive_some(65536)
            assert data, "server closed the connection"
            buffer += data
            while b"\n" in buffer:
                reply, buffer = buffer.split(b"\n", 1)
                replies.append(json.loads(reply))
    return replies


async def test_socket_mode_lines_and_removal(tmp_path: Path) -> None:
    path = str(tmp_path / "ctl" / "a.sock")
    async with one_node() as node:
        with trio.fail_after(10):
            listener = await bind_control(path)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            assert stat.S_IMODE(os.stat(tmp_path / "ctl").st_mode) == 0o700
            server = ControlServer(node, max_line=1000)
            async with trio.open_nursery() as nursery:
                assert await nursery.start(server.serve, listener) == path
                replies = await converse(
                    path,
                    [
                        b"garbage\n",
                        b'{"cmd": "ping"}\n',
                        b"x" * 5000,  # over the limit, no newline yet
                        b"y" * 5000 + b"\n",  # ...the rest of that line is discarded
                        b'{"cmd": "ping"}\n\n',  # an empty line gets no reply
                    ],
                )
                assert [r["ok"] for r in replies] == [False, True, False, True]
                assert "exceeds 1000 bytes" in replies[2]["error"]
                nursery.cancel_scope.cancel()
    assert not exists(path)


async def test_client_limit(tmp_path: Path) -> None:
    path = str(tmp_path / "a.sock")
    async with one_node() as node:
        with trio.fail_after(10):
            server = ControlServer(node, max_clients=1)
            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve, await bind_control(path))
                first = await trio.open_unix_socket(path)
                await first.send_all(b'{"cmd": "ping"}\n')
                assert b'"ok": true' in await first.receive_some(65536)
                second = await trio.open_unix_socket(path)
                reply = json.loads(await second.receive_some(65536))
                assert reply["kind"] == "refused" and "too many" in reply["error"]
                await first.aclose()
                await second.aclose()
                nursery.cancel_scope.cancel()


async def test_stale_socket_is_replaced_live_one_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "a.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens: a node that died
    with trio.fail_after(10):
        listener = await bind_control(path)
        with pytest.raises(ListenError, match="a node is already serving there"):
            await bind_control(path)
        await listener.aclose()
    replace_with_file(path)
    with pytest.raises(ListenError, match="exists and is not a socket"):
        await bind_control(path)


async def test_unbindable_path_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ListenError) as info:
        await bind_control(str(blocker / "sub" / "a.sock"))
    assert str(info.value).startswith(f"cannot open the control socket {blocker}/sub/a.sock: ")
    assert "\n" not in str(info.value)


async def test_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ListenError, match=r"writable by others \(mode 0777\) and not sticky"):
        await bind_control(str(shared / "a.sock"))
    shared.chmod(0o1777)  # sticky, like /tmp: others cannot remove our file
    listener = await bind_control(str(shared / "a.sock"))
    await listener.aclose()
