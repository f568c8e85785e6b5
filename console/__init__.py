"""vsm-console operator console: CLI, TUI, daemon and ctl client."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vsm-console")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+source"
