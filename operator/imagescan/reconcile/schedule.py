"""When each object is next due for an AWS read: the one place that decides it.

Every outcome of a reconcile sets a single "next attempt" time per object, and nothing else makes an
object due (handlers for create, update, resume and the reconcile-requested-at annotation reconcile at once
because a person asked; they do not consult the schedule):

- success: the earlier of the next resync and the next findings refresh, each with ±10 % jitter so objects
  created together do not hit AWS together;
- Recoverable failure: exponential back-off with "equal jitter" (2 s, 4 s, 8 s … each drawn from the upper
  half of its step), capped at 5 min and at the resync interval;
- Terminal failure (Stalled): the next resync, as the spec or AWS must change first;
- settling (AWS is still on its way, e.g. Inspector ENABLING): the back-off steps, without counting as a
  failure anywhere else;
- woken: an object waiting on another (a pipeline on an InspectorActivation) is due at the next tick once
  that other object reports what it waited for.

A pending findings refresh never shortens a back-off: it is served by the next attempt, whenever that is.
Kept in memory, per object: after a restart kopf's resume handlers reconcile everything once, which is the
right thing anyway. The timer asks ``due`` once per tick, so a delay shorter than the tick waits for the tick.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable

BACKOFF_BASE = 2.0
BACKOFF_CAP = 300.0
JITTER = 0.1


@dataclasses.dataclass
class Entry:
    next_attempt: float = 0.0
    """The only time that makes the object due."""
    next_findings: float = 0.0
    """When findings are next due; an attempt at or after it refreshes them."""
    failures: int = 0
    """Recoverable failures in a row; reset by a success or a Terminal failure."""


@dataclasses.dataclass(frozen=True)
class Due:
    sync: bool
    findings: bool


def backoff(failures: int, resync: float, rng: random.Random) -> float:
    """Delay after the ``failures``-th Recoverable failure in a row (1-based): the nominal step
    2 s · 2^(failures-1), capped, then drawn from [step/2, step] so a crowd that failed together spreads out
    without ever retrying at once."""
    step = min(BACKOFF_CAP, resync, BACKOFF_BASE * 2.0 ** min(failures - 1, 32))
    return rng.uniform(step / 2, step)


class Schedule:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self._clock = clock
        self._rng = rng or random.Random()
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def due(self, uid: str) -> Due:
        """What is due for an object. One the schedule has never seen is not due: its create or resume
        handler reconciles it first, and a timer that also did would only queue duplicate work."""
        entry = self._entries.get(uid)
        now = self._clock()
        if entry is None or now < entry.next_attempt:
            return Due(sync=False, findings=False)
        return Due(sync=True, findings=now >= entry.next_findings)

    def next_attempt(self, uid: str) -> float | None:
        """Seconds until the object is due (negative: overdue); None if it was never reconciled."""
        entry = self._entries.get(uid)
        return None if entry is None else entry.next_attempt - self._clock()

    def succeeded(self, uid: str, *, resync: float, refresh: float, findings_refreshed: bool) -> float:
        """Record a success; returns the delay until the next attempt (resync or findings refresh)."""
        with self._lock:
            entry = self._entries.setdefault(uid, Entry())
            now = self._clock()
            entry.failures = 0
            if findings_refreshed or entry.next_findings <= now:
                entry.next_findings = now + self._jitter(refresh)
            entry.next_attempt = min(now + self._jitter(resync), entry.next_findings)
            return entry.next_attempt - now

    def failed(self, uid: str, *, terminal: bool, resync: float) -> float:
        """Record a failure; returns the delay until the next attempt."""
        with self._lock:
            entry = self._entries.setdefault(uid, Entry())
            if terminal:
                # The spec or AWS must change; re-check on the normal resync, not sooner.
                entry.failures = 0
                delay = self._jitter(resync)
            else:
                entry.failures += 1
                delay = backoff(entry.failures, resync, self._rng)
            entry.next_attempt = self._clock() + delay
            return delay

    def settling(self, uid: str, *, resync: float) -> float:
        """Record that AWS is still changing state: re-read with the back-off steps; returns the delay."""
        return self.failed(uid, terminal=False, resync=resync)

    def wake(self, uid: str) -> None:
        """Make an object due now (at its next tick), whatever it was waiting for."""
        with self._lock:
            entry = self._entries.get(uid)
            if entry is not None:
                entry.next_attempt = min(entry.next_attempt, self._clock())

    def forget(self, uid: str) -> None:
        with self._lock:
            self._entries.pop(uid, None)

    def _jitter(self, interval: float) -> float:
        return interval * self._rng.uniform(1 - JITTER, 1 + JITTER)
