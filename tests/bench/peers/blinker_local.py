"""blinker in its own OS process: ``signal.send`` to one receiver, µs/event.

``python -m tests.bench.peers.blinker_local N REPS`` prints
``{"us_per_event": ..., "delivered": ...}``: the best of REPS timed loops of N
sends, the same payload as our local dispatch row.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import blinker

from ..proto import PAYLOAD, emit, error


def main(n: int, reps: int) -> None:
    signal = blinker.Namespace().signal("task_execution")
    got = 0

    def receiver(sender: Any, **data: Any) -> None:
        nonlocal got
        got += 1

    signal.connect(receiver)
    send = signal.send
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(n):
            send("bench", data=PAYLOAD)
        best = min(best, time.perf_counter() - start)
    if got != n * reps:
        raise RuntimeError(f"receiver got {got} of {n * reps} signals")
    emit({"us_per_event": best / n * 1e6, "delivered": got})


if __name__ == "__main__":
    try:
        main(int(sys.argv[1]), int(sys.argv[2]))
    except Exception as exc:
        emit(error(exc))
        raise
