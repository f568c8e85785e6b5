"""Where things live on disk by default (the daemon and ctl agree through this module).

Kept free of the node package, so ``vsm-console ctl`` starts without importing trio.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def default_control_path(
    name: str, data_dir: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    """Where a node's control socket lives when not configured.

    ``$XDG_RUNTIME_DIR/vsm-console/<node>.sock``, else ``<data_dir>/<node>.sock``,
    else ``/tmp/vsm-console-<uid>/<node>.sock``. ``ctl --name`` finds it the same way.
    """
    env = os.environ if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        return str(Path(runtime) / "vsm-console" / f"{name}.sock")
    if data_dir:
        return str(Path(data_dir) / f"{name}.sock")
    return str(Path("/tmp") / f"vsm-console-{os.getuid()}" / f"{name}.sock")
