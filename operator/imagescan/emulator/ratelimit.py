"""AWS's request-rate quotas, emulated as token buckets, so benchmarks can measure against the floor they set.

On real AWS a large installation is limited by the calls per second each account may make to each operation
in a region, not by the operator's CPU. With a rate limit set, every (account, region, operation) has a
bucket of ``burst`` tokens refilled at ``tps`` per second; a call that finds its bucket empty is refused with
the service's throttling error (``server`` picks the code), as AWS's front end does. Operations can have
limits of their own (``operations`` overrides). Refusals are counted per operation.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Limit:
    """A sustained rate and how many calls may arrive at once after a quiet spell."""

    tps: float
    burst: float

    def __post_init__(self) -> None:
        if not self.tps > 0:
            raise ValueError("a rate limit's tps must be positive")
        if not self.burst >= 1:
            raise ValueError("a rate limit's burst must be at least 1")


def limit(tps: float, burst: float | None = None) -> Limit:
    """A ``Limit``; the burst defaults to one second's worth of calls (at least one)."""
    return Limit(float(tps), float(burst) if burst is not None else max(1.0, float(tps)))


class RateLimits:
    """Token buckets per (account, region, operation); thread-safe. Off until ``configure``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._default: Limit | None = None
        self._overrides: dict[str, Limit] = {}
        self._buckets: dict[tuple[str, str, str], tuple[float, float]] = {}  # -> (tokens, when counted)
        self._throttled: collections.Counter[str] = collections.Counter()

    def configure(self, default: Limit | None, operations: Mapping[str, Limit] | None = None) -> None:
        """Limit every operation to ``default`` (None: unlimited) except those in ``operations``; buckets
        start full."""
        with self._lock:
            self._default = default
            self._overrides = dict(operations or {})
            self._buckets.clear()

    def settings(self) -> dict[str, Any]:
        """``{"tps": ..., "burst": ..., "operations": {name: {"tps": ..., "burst": ...}}}`` (None: off)."""
        with self._lock:
            default = dataclasses.asdict(self._default) if self._default else {"tps": None, "burst": None}
            return {**default, "operations": {name: dataclasses.asdict(each) for name, each in self._overrides.items()}}

    def admit(self, account_id: str, region: str, operation: str, *, named_only: bool = False) -> float | None:
        """Take a token for this call: None if it may proceed, else the seconds until a token is back;
        ``named_only``: limited only by a limit of the operation's own."""
        with self._lock:
            rule = self._overrides.get(operation, None if named_only else self._default)
            if rule is None:
                return None
            key = (account_id, region, operation)
            now = self._clock()
            tokens, then = self._buckets.get(key, (rule.burst, now))
            tokens = min(rule.burst, tokens + (now - then) * rule.tps)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            self._throttled[operation] += 1
            return (1.0 - tokens) / rule.tps

    def throttled(self) -> dict[str, int]:
        """Refused calls per operation since the last ``reset_counts``."""
        with self._lock:
            return dict(self._throttled)

    def reset_counts(self) -> None:
        with self._lock:
            self._throttled.clear()


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` header value: whole seconds, at least one."""
    return str(max(1, math.ceil(seconds)))
