"""The value rules for variety settings, in one place: quotas and capacities
per channel (``NodeConfig`` checks them with these too), rates, fractions and
counts. Sans-IO; every error is a ConfigError naming the setting.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from node.core.events import Channel
from node.errors import ConfigError

ChannelMap = Mapping[Channel, Any] | Mapping[str, Any] | Mapping[Channel | str, Any]


def check_quota(channel: Channel, value: object) -> float | None:
    """The rule for a channel's quota, in one place (``NodeConfig`` uses it too).

    Events/s, finite and >= 0, or None for unlimited; algedonic has none to set.
    """
    key = f"quotas.{channel.value}"
    if value is None:
        return None
    if channel is Channel.ALGEDONIC:
        raise ConfigError(f"{key}: algedonic bypasses every limit; it has no quota", key=key)
    try:
        return check_number(key, value)
    except ConfigError:
        hint = "(events/s; None or 'unlimited' for no limit)"
        raise ConfigError(
            f"{key} must be a number >= 0 {hint}, got {value!r:.40}", key=key
        ) from None


def check_capacity(channel: Channel, value: object) -> float:
    """The rule for a channel's bucket capacity: one token at least, or nothing passes."""
    key = f"capacities.{channel.value}"
    if channel is Channel.ALGEDONIC:
        raise ConfigError(f"{key}: algedonic bypasses every limit; it has no capacity", key=key)
    if (capacity := check_number(key, value)) < 1:
        raise ConfigError(f"{key} must be >= 1 token, got {value!r:.40}", key=key)
    return capacity


def by_channel(mapping: ChannelMap | None, what: str) -> dict[Channel, Any]:
    out: dict[Channel, Any] = {}
    items: Iterable[tuple[Channel | str, Any]] = mapping.items() if mapping else ()
    for key, value in items:
        channel = Channel.parse(key)
        if channel in out:
            raise ConfigError(f"{what} name channel {channel.value!r} twice")
        out[channel] = value
    return out


def check_number(what: str, value: object) -> float:
    if type(value) is bool or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} must be a number, got {value!r:.40}", key=what)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{what} must be finite and >= 0, got {value!r}", key=what)
    return float(value)


def check_positive(what: str, value: object) -> float:
    number = check_number(what, value)
    if number == 0:
        raise ConfigError(f"{what} must be > 0, got {value!r}")
    return number


def check_fraction(what: str, value: object) -> float:
    number = check_number(what, value)
    if number > 1:
        raise ConfigError(f"{what} must be in [0, 1], got {value!r}")
    return number


def check_count(what: str, value: object) -> int:
    if type(value) is not int or value < 1:
        raise ConfigError(f"{what} must be an int >= 1, got {value!r:.40}")
    return value
