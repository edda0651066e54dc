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
- woken: an object waiting on another (a pipeline on an InspectorActivation) is due at once when that other
  object reports what it waited for;
- notified: AWS pushed an event about the object (EventBridge, through the events queue): findings are due,
  and the object is due once its events have gone quiet for ``EVENT_QUIET`` seconds, at most
  ``EVENT_MAX_WAIT`` after the first of them, so a burst of events is one refresh. A notification never
  shortens a back-off or re-reads a Stalled object early: the attempt that comes anyway refreshes findings.

With push intake healthy, a success is scheduled on the ``safety_net`` interval (when it is longer than the
object's own): events carry the changes, the periodic reads only catch what they might miss. Not an object's
first success (create, or resume after a restart): events that came meanwhile could not be matched to it yet,
so its first period is on its own intervals. When intake fails, ``poll_again`` brings every object back to its
own intervals, counted from its last success and spread over one resync.

A pending findings refresh never shortens a back-off: it is served by the next attempt, whenever that is.
Kept in memory, per object: after a restart kopf's resume handlers reconcile everything once, which is the
right thing anyway. The timer waits until ``next_attempt`` (or until woken), asking ``due`` at least once per tick.
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
EVENT_QUIET = 2.0
EVENT_MAX_WAIT = 8.0
EVENT_COVERED_AFTER = 10.0
"""An event is already served by a refresh that started this long after the change it reports: AWS's read
APIs show a change within seconds, so such a refresh read it (a redelivered, late or backlogged event)."""
NEVER = float("inf")


@dataclasses.dataclass
class Entry:
    next_attempt: float = 0.0
    """The only time that makes the object due."""
    next_findings: float = 0.0
    """When findings are next due; an attempt at or after it refreshes them."""
    failures: int = 0
    """Recoverable failures in a row; reset by a success or a Terminal failure."""
    stalled: bool = False
    """The last attempt failed Terminally: only the resync re-reads it."""
    notified: bool = False
    """Events reported changes no successful attempt has read yet."""
    event_due: float = NEVER
    """When the pending burst of events makes the object due (NEVER: no events pending)."""
    burst_started: float | None = None
    last_event: float | None = None
    poll: tuple[float, float] | None = None
    """(resync, refresh) of the last success, when it was scheduled on the safety net instead."""
    last_success: float = 0.0
    last_findings: float = 0.0
    refresh_started: float | None = None
    """When the last successful findings refresh began."""


@dataclasses.dataclass(frozen=True)
class Due:
    sync: bool
    findings: bool
    notified: bool = False
    """AWS reported changes since the last success: re-read the builds, trust no list older than now."""


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
        if entry is None or now < _due_at(entry):
            return Due(sync=False, findings=False)
        return Due(sync=True, findings=now >= entry.next_findings, notified=entry.notified)

    def next_attempt(self, uid: str) -> float | None:
        """Seconds until the object is due (negative: overdue); None if it was never reconciled."""
        entry = self._entries.get(uid)
        return None if entry is None else _due_at(entry) - self._clock()

    def now(self) -> float:
        """The schedule's clock: pass it back as ``succeeded(started=...)``."""
        return self._clock()

    def succeeded(self, uid: str, *, resync: float, refresh: float, findings_refreshed: bool,
                  safety_net: float | None = None, started: float | None = None) -> float:
        """Record a success; returns the delay until the next attempt (resync or findings refresh).
        ``safety_net``: push intake is healthy, so neither interval is shorter than it. ``started``: when the
        attempt began; events notified after it are still pending (the attempt may have read AWS before them)."""
        with self._lock:
            first = uid not in self._entries or not self._entries[uid].last_success
            entry = self._entries.setdefault(uid, Entry())
            now = self._clock()
            if first:
                # Events that came while the first reconcile ran could not be matched to the object yet: one
                # period on its own intervals catches what they reported.
                safety_net = None
            entry.failures = 0
            entry.stalled = False
            entry.last_success = now
            entry.poll = (resync, refresh) if safety_net is not None else None
            if safety_net is not None:
                resync, refresh = max(resync, safety_net), max(refresh, safety_net)
            if findings_refreshed and started is not None:
                entry.refresh_started = started
            if findings_refreshed or entry.next_findings <= now:
                entry.last_findings = now
                entry.next_findings = now + self._jitter(refresh)
            entry.next_attempt = min(now + self._jitter(resync), entry.next_findings)
            entry.notified = False
            self._settle_events(entry, started)
            return _due_at(entry) - now

    def failed(self, uid: str, *, terminal: bool, resync: float) -> float:
        """Record a failure; returns the delay until the next attempt."""
        with self._lock:
            entry = self._entries.setdefault(uid, Entry())
            entry.stalled = terminal
            if terminal:
                # The spec or AWS must change; re-check on the normal resync, not sooner.
                entry.failures = 0
                delay = self._jitter(resync)
            else:
                entry.failures += 1
                delay = backoff(entry.failures, resync, self._rng)
            entry.next_attempt = self._clock() + delay
            # Events seen so far are served by the next attempt, whenever the back-off allows it.
            self._settle_events(entry, None)
            return delay

    def settling(self, uid: str, *, resync: float) -> float:
        """Record that AWS is still changing state: re-read with the back-off steps; returns the delay."""
        return self.failed(uid, terminal=False, resync=resync)

    def wake(self, uid: str) -> None:
        """Make an object due now, whatever it was waiting for."""
        with self._lock:
            entry = self._entries.get(uid)
            if entry is not None:
                entry.next_attempt = min(entry.next_attempt, self._clock())

    def notify(self, uid: str, age: float = 0.0) -> bool:
        """AWS reported a change to the object ``age`` seconds ago: findings are due, and the object once its
        events go quiet (within ``EVENT_MAX_WAIT`` of the first). False for an object never reconciled (its
        create or resume handler reads everything anyway) and for a change a refresh has already read
        (``EVENT_COVERED_AFTER``). A back-off or a Stalled object keeps its time."""
        with self._lock:
            entry = self._entries.get(uid)
            now = self._clock()
            if entry is None or _covered(entry, now - age):
                return False
            entry.next_findings = min(entry.next_findings, now)
            entry.notified = True
            if entry.failures or entry.stalled:
                return True
            if entry.burst_started is None:
                entry.burst_started = now
            entry.last_event = now
            entry.event_due = min(now + EVENT_QUIET, entry.burst_started + EVENT_MAX_WAIT)
            return True

    def poll_again(self) -> list[str]:
        """Push intake stopped working: every object scheduled on the safety net is due again on its own
        intervals, counted from its last success, and those already overdue are spread over one resync rather
        than read all at once. A back-off or a Stalled object keeps its time. Returns the objects moved."""
        with self._lock:
            now = self._clock()
            moved: list[str] = []
            for uid, entry in self._entries.items():
                if entry.poll is None:
                    continue
                resync, refresh = entry.poll
                entry.poll = None
                if entry.failures or entry.stalled:
                    continue
                spread = now + self._rng.uniform(0, resync)
                entry.next_findings = min(entry.next_findings,
                                          max(entry.last_findings + self._jitter(refresh), spread))
                entry.next_attempt = min(entry.next_attempt, max(entry.last_success + self._jitter(resync), spread),
                                         entry.next_findings)
                moved.append(uid)
            return moved

    def forget(self, uid: str) -> None:
        with self._lock:
            self._entries.pop(uid, None)

    def _jitter(self, interval: float) -> float:
        return interval * self._rng.uniform(1 - JITTER, 1 + JITTER)

    @staticmethod
    def _settle_events(entry: Entry, started: float | None) -> None:
        """An attempt has served the events notified before it started; later ones stay pending."""
        if started is not None and entry.last_event is not None and entry.last_event > started:
            entry.notified = True
            entry.burst_started = entry.last_event
            entry.event_due = entry.last_event + EVENT_QUIET
            return
        entry.event_due = NEVER
        entry.burst_started = entry.last_event = None


def _covered(entry: Entry, happened: float) -> bool:
    return entry.refresh_started is not None and entry.refresh_started >= happened + EVENT_COVERED_AFTER


def _due_at(entry: Entry) -> float:
    return min(entry.next_attempt, entry.event_due)
