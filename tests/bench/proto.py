"""The worker side of the harness protocol: JSON lines on stdin and stdout.

The harness writes one command per line (``{"cmd": "drain", ...}``) to a
worker's stdin; the worker answers each with one JSON line on stdout (an
``"error"`` key if the command failed) and logs to stderr. End of input means
"exit". Workers import only this module from the harness, so they start fast.
"""

from __future__ import annotations

import json
import sys
from typing import Any

#: The same ~100-byte event everywhere: our nodes publish it as data of a
#: ``task_execution`` event; the peers carry it msgpack-packed.
PAYLOAD: dict[str, Any] = {"task": "t123", "worker": "w3", "ms": 12.5}
SUBJECT = "task_execution"
#: Bounds for any wait a worker makes on its own.
MAX_WAIT_S = 600.0


def emit(obj: dict[str, Any]) -> None:
    """One JSON line to the harness (``default=str``: enums and the like as text)."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def parse(line: str | bytes) -> dict[str, Any]:
    """A command line; end of input (empty) or garbage reads as exit."""
    text = line.decode() if isinstance(line, bytes) else line
    if not text.strip():
        return {"cmd": "exit"}
    try:
        cmd = json.loads(text)
    except ValueError:
        return {"cmd": "exit", "why": f"bad command line {text[:80]!r}"}
    return cmd if isinstance(cmd, dict) else {"cmd": "exit"}


def read_cmd() -> dict[str, Any]:
    """Blocking read of the next command (for the synchronous workers)."""
    return parse(sys.stdin.readline())


def error(exc: BaseException) -> dict[str, Any]:
    return {"error": f"{type(exc).__name__}: {exc}"}
