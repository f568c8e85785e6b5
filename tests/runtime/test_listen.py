"""A node that cannot listen gives up at once, in one line: no restarts, no traceback."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio

from node.config import NodeConfig
from node.errors import EscalationError, ListenError
from node.node import open_node
from node.runtime.supervisor import Component, Supervisor
from node.runtime.transport import TcpTransport

pytestmark = pytest.mark.trio


async def test_permanent_error_escalates_without_restart(autojump_clock: Any) -> None:
    starts: list[str] = []

    async def later(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        starts.append("later")
        task_status.started()
        await trio.sleep_forever()

    async def cannot(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        starts.append("cannot")
        raise ListenError("cannot listen for peers on x:1: address already in use")

    sup = Supervisor(
        [Component("later", later), Component("cannot", cannot)], permanent=(ListenError,)
    )
    with pytest.raises(EscalationError) as info:
        await sup.run()
    assert str(info.value) == (
        "component 'cannot' cannot run: cannot listen for peers on x:1: address already in use"
    )
    assert isinstance(info.value.__cause__, ListenError)
    assert starts == ["later", "cannot"]
    assert sup.restarts == {"later": 0, "cannot": 0}
    assert trio.current_time() == 0  # no backoff, no waiting for a restart window


async def test_tcp_listen_failures_name_address_and_cause() -> None:
    transport = TcpTransport()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as info:
            await transport.listen(f"127.0.0.1:{port}")
    assert str(info.value) == f"cannot listen for peers on 127.0.0.1:{port}: address already in use"
    assert isinstance(info.value, OSError)  # still caught by `except OSError`
    with pytest.raises(ListenError, match=r"on 192\.0\.2\.1:7401: not an address of this host"):
        await transport.listen("192.0.2.1:7401")
    with pytest.raises(ListenError, match=r"on nosuchhost\.invalid:1: host cannot be resolved"):
        await transport.listen("nosuchhost.invalid:1")


async def test_open_node_on_a_taken_port_fails_once(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = NodeConfig(name="a", listen=f"127.0.0.1:{port}", cookie="c" * 16)
        with trio.fail_after(10), pytest.raises(EscalationError) as info:
            async with open_node(config):
                pass  # pragma: no cover - never reached
    assert isinstance(info.value.__cause__, ListenError)
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
