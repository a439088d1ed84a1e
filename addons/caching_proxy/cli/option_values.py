"""What a cache option's text may be: the validators the option table's flags use (each
returns the value to use, or raises argparse.ArgumentTypeError with the message argparse prints
after "argument --flag: "), and the readers that turn an option's text into what the cache uses
(ValueError naming the option). Pure functions, no I/O but the process's file limit."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from mitmproxy.utils import human

from caching_proxy.policy import parse_use_stale
from caching_proxy.policy.encoding import parse_codings
from caching_proxy.policy.origin_budget import parse_rate


def whole_number(what: str, low: int, high: int | None = None,
                 not_a_number: str = "not a number") -> Callable[[str], int]:
    """A parser of whole numbers from `low` to `high` (no bound when None), whose messages say
    "invalid WHAT ..." as argparse prints them after the flag."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: {not_a_number}") from None
        if value < low or (high is not None and value > high):
            bound = f"must be {low}-{high}" if high is not None else "must not be negative"
            raise argparse.ArgumentTypeError(f"invalid {what} {value}: {bound}")
        return value

    return parse


port_number = whole_number("port", 1, 65535)
seconds = whole_number("seconds", 0, not_a_number="not a whole number")


def object_size(text: str) -> str:
    try:
        size = human.parse_size(text)
    except ValueError:
        size = None
    if size is None or size <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: use e.g. 512k, 64m or 1g")
    return text


def parse_timeout(text: str) -> float:
    """Seconds above 0, up to 60; ValueError otherwise."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 60:
        raise ValueError(f"invalid seconds {text!r}: a number above 0, up to 60")
    return value


def number_from(text: str, low: float, high: float, what: str) -> float:
    """A number from `low` to `high` (fractions allowed); ValueError saying so otherwise."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # NaN too
        raise ValueError(f"invalid {what} {text!r}: a number from {low:g} up to {high:g}")
    return value


def parse_wait(text: str) -> float:
    """Seconds from 0 up to an hour."""
    return number_from(text, 0, 3600, "seconds")


def parse_beta(text: str) -> float:
    """XFetch's beta: from 0 (off) up to 100."""
    return number_from(text, 0, 100, "refresh-ahead factor")


def store_timeout(options: Any) -> float:
    try:
        return parse_timeout(str(options.cache_store_timeout))
    except ValueError as e:
        raise ValueError(f"cache_store_timeout: {e}") from None


AUTO_MEMORY_SIZE = 64 << 20  # with a network store


def size_or_zero(text: str) -> str:
    if text.strip() in ("0", "auto"):
        return text
    return object_size(text)


def memory_size(options: Any) -> int:
    text = str(options.cache_memory_size).strip()
    if text == "auto":
        from caching_proxy.store import is_redis_url

        return AUTO_MEMORY_SIZE if is_redis_url(options.cache_store or "") else 0
    if text == "0":
        return 0
    size = human.parse_size(text)
    if size is None or size <= 0:
        raise ValueError("cache_memory_size must be 0 or a size such as 64m")
    return size


def checked_by(parse: Callable[[str], object]) -> Callable[[str], str]:
    """A flag validator that keeps the text when `parse(text)` accepts it, and turns its
    ValueError into the message argparse prints."""

    def check(text: str) -> str:
        try:
            parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text

    return check


def _parse_log_format(text: str) -> object:
    from caching_proxy.ops.log_formats import parse_format

    return parse_format(text)


encodings = checked_by(parse_codings)
log_format = checked_by(_parse_log_format)
use_stale = checked_by(parse_use_stale)
origin_rate = checked_by(parse_rate)
wait_seconds = checked_by(parse_wait)
beta = checked_by(parse_beta)
count = whole_number("count", 0)
burst = whole_number("burst", 1)


def store_url(text: str) -> str:
    from caching_proxy.store.redis.urls import parse_store_url, redact_store_url

    try:
        parse_store_url(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"invalid store {redact_store_url(text)!r}: {e}") from None
    return text


# File descriptors kept out of --max-connections' automatic bound: store files, logs, listeners.
FD_RESERVE = 128


def auto_max_connections() -> int:
    """The automatic bound on client connections: half of what the soft RLIMIT_NOFILE leaves
    after FD_RESERVE, since each client connection may hold an origin connection too."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            soft = 1 << 20
    except (ImportError, OSError, ValueError):  # no such limit here (Windows)
        soft = 1024
    return max(1, (soft - FD_RESERVE) // 2)


def max_connections_of(value: str) -> int:
    """The bound an option value means: `auto`, or a whole number (0: no bound)."""
    if value.strip().lower() == "auto":
        return auto_max_connections()
    number = int(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def connection_limit(text: str) -> str:
    try:
        max_connections_of(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid connection count {text!r}: auto or a whole number >= 0") from None
    return text
