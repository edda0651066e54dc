"""When each object is next due for an AWS read or a findings refresh.

Kept in memory, per object: after a restart kopf's resume handlers reconcile everything once, which is the
right thing anyway. Every interval carries jitter so that objects created together do not hit AWS together,
and failures back off exponentially (with full jitter, capped) so throttling never turns into a hot loop.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable


@dataclasses.dataclass
class Entry:
    next_sync: float = 0.0
    next_findings: float = 0.0
    failures: int = 0


@dataclasses.dataclass(frozen=True)
class Due:
    sync: bool
    findings: bool


class Schedule:
    def __init__(
            self,
            *,
            clock: Callable[[], float] = time.monotonic,
            rng: random.Random | None = None,
            backoff_base: float = 2.0,
            backoff_cap: float = 300.0,
    ) -> None:
        self._clock = clock
        self._rng = rng or random.Random()
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap

    def due(self, uid: str) -> Due:
        """What is due for an object. One the schedule has never seen is not due: its create or resume
        handler reconciles it first, and a timer that also did would only queue duplicate work."""
        entry = self._entries.get(uid)
        if entry is None:
            return Due(sync=False, findings=False)
        now = self._clock()
        return Due(sync=now >= entry.next_sync or now >= entry.next_findings, findings=now >= entry.next_findings)

    def succeeded(self, uid: str, *, resync: float, refresh: float, findings_refreshed: bool) -> None:
        with self._lock:
            entry = self._entries.setdefault(uid, Entry())
            now = self._clock()
            entry.failures = 0
            entry.next_sync = now + self._jitter(resync)
            if findings_refreshed or entry.next_findings <= now:
                entry.next_findings = now + self._jitter(refresh)

    def failed(self, uid: str, *, terminal: bool, resync: float) -> float:
        """Record a failure; returns the delay until the next attempt."""
        with self._lock:
            entry = self._entries.setdefault(uid, Entry())
            if terminal:
                # The spec or AWS must change; re-check on the normal resync, not sooner.
                delay = self._jitter(resync)
            else:
                entry.failures += 1
                ceiling = min(self.backoff_cap, resync, self.backoff_base * 2 ** entry.failures)
                delay = self._rng.uniform(ceiling / 2, ceiling)
            entry.next_sync = self._clock() + delay
            return delay

    def forget(self, uid: str) -> None:
        with self._lock:
            self._entries.pop(uid, None)

    def _jitter(self, interval: float) -> float:
        return interval * self._rng.uniform(0.9, 1.1)
