"""Make the README's screenshots (on demand, ~20 s of real time):

    python tests/console/make_screenshots.py tests/console/screenshots

A 5-node demo under the manual strategy with synthetic load: S1 flooded from
n1, then split 3|2, captured with the banner up, and the resolution screen.
Real clock: the plot shows what a user would see after the same wait.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from console.app import make_app
from console.demo import DemoOptions
from console.session import Session

SIZE = (140, 44)


async def main(folder: Path) -> None:
    app = make_app(Session(demo=DemoOptions(nodes=5, strategy="manual")))
    async with app.run_test(size=SIZE) as pilot:
        demo = app.session.demo
        assert demo is not None

        async def until(predicate: object, limit: float = 60.0) -> None:
            deadline = time.monotonic() + limit
            while not predicate():  # type: ignore[operator]
                if time.monotonic() > deadline:
                    raise SystemExit("demo did not reach the state for the screenshot")
                await pilot.pause(0.2)

        await until(
            lambda: (
                len(demo.nodes) == 5
                and app.snap.get("partition", {}).get("status") == "healthy"
                and len(app.snap["partition"]["members"]) == 5
            )
        )
        await pilot.pause(4.0)
        demo.flood("n1", seconds=6.0)
        await pilot.pause(8.0)
        demo.split(["n4", "n5"])
        await until(lambda: app.snap.get("partition", {}).get("status") == "awaiting_operator")
        await pilot.pause(1.0)
        app.save_screenshot(str(folder / "console-demo.svg"))
        await pilot.press("r")
        await pilot.pause(0.5)
        app.save_screenshot(str(folder / "console-resolve.svg"))
        await pilot.press("escape")


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/console/screenshots")
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(target))
