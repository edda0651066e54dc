"""When an object is next due, driven with a controllable clock at the shipped intervals (no sleeps).

``_run_timer`` plays the operator's timer: the create handler attempts at t=0, then every ``tick`` the timer
asks ``due`` and, when due, attempts and tells the schedule how it went, as handlers/imagepipeline.py does.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest

from imagescan.handlers import imagepipeline
from imagescan.models import imagepipeline as m
from imagescan.models import kstatus
from imagescan.reconcile import schedule

RESYNC = 600.0  # resyncInterval's default (10m)
REFRESH = 900.0  # findings.refreshInterval's default (15m)
TICK = 10.0  # imagescan run --tick's default


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _plan(seed: int = 1) -> tuple[schedule.Schedule, Clock]:
    clock = Clock()
    return schedule.Schedule(clock=clock, rng=random.Random(seed)), clock


Outcome = Callable[[schedule.Schedule, str], float]


def _terminal(plan: schedule.Schedule, uid: str) -> float:
    return plan.failed(uid, terminal=True, resync=RESYNC)


def _recoverable(plan: schedule.Schedule, uid: str) -> float:
    return plan.failed(uid, terminal=False, resync=RESYNC)


def _run_timer(plan: schedule.Schedule, clock: Clock, outcome: Outcome, *, seconds: float,
               tick: float = TICK) -> list[tuple[float, float]]:
    """(time, announced delay) of every attempt: the create handler's at 0, then the timer's."""
    clock.now = 0.0
    attempts = [(0.0, outcome(plan, "u"))]
    while clock.now + tick <= seconds:
        clock.now += tick
        if plan.due("u").sync:
            attempts.append((clock.now, outcome(plan, "u")))
    return attempts


def test_an_object_never_reconciled_is_not_due() -> None:
    plan, _ = _plan()
    assert plan.due("u") == schedule.Due(sync=False, findings=False)
    assert plan.next_attempt("u") is None


def test_never_succeeded_terminal_failure_waits_for_the_resync() -> None:
    """The bug: findings were "due" from t=0 for an object that never succeeded, so it ran every tick."""
    plan, clock = _plan()
    attempts = _run_timer(plan, clock, _terminal, seconds=3600)
    times = [t for t, _ in attempts]
    assert times[:2] == [0.0, pytest.approx(times[1])] and 540 <= times[1] <= 670
    assert 5 <= len(times) <= 7  # one an hour per 10 min, not 360
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(540 <= gap <= 670 for gap in gaps), gaps


@pytest.mark.parametrize("tick", [TICK, 0.2])
def test_attempts_never_come_sooner_than_announced(tick: float) -> None:
    """The log's "next attempt in Ns" holds, whatever the tick: the tick only rounds a delay up."""
    for outcome in (_terminal, _recoverable):
        plan, clock = _plan()
        attempts = _run_timer(plan, clock, outcome, seconds=1800, tick=tick)
        for (at, announced), (following, _) in itertools.pairwise(attempts):
            assert announced <= following - at < announced + tick + 1e-9


def test_recoverable_backoff_doubles_from_2s_with_jitter_and_caps_at_5min() -> None:
    plan, _ = _plan()
    delays = [_recoverable(plan, "u") for _ in range(12)]
    for failures, delay in enumerate(delays, start=1):
        step = min(300.0, 2.0 * 2 ** (failures - 1))
        assert step / 2 <= delay <= step, (failures, delay)
    assert delays[-1] <= 300 and delays[-1] >= 150


def test_backoff_is_capped_by_a_short_resync_interval() -> None:
    rng = random.Random(3)
    assert all(schedule.backoff(failures, 60.0, rng) <= 60.0 for failures in range(1, 40))
    assert schedule.backoff(10_000, 600.0, rng) <= 300.0  # no overflow however long it fails


def test_backoff_jitter_spreads_a_crowd_that_failed_together() -> None:
    rng = random.Random(5)
    delays = [schedule.backoff(4, RESYNC, rng) for _ in range(1000)]
    assert 8.0 <= min(delays) < 8.5 and 15.5 < max(delays) <= 16.0


def test_success_is_due_at_the_resync_then_at_the_findings_refresh() -> None:
    plan, clock = _plan()
    delay = plan.succeeded("u", resync=RESYNC, refresh=REFRESH, findings_refreshed=True)
    assert 540 <= delay <= 660
    clock.now = delay - 1
    assert not plan.due("u").sync
    clock.now = delay
    assert plan.due("u") == schedule.Due(sync=True, findings=False)
    # A resync that did not refresh findings keeps the refresh time: next due is the refresh (~15 min).
    following = plan.succeeded("u", resync=RESYNC, refresh=REFRESH, findings_refreshed=False)
    assert 810 - delay <= following <= 990 - delay
    clock.now += following
    assert plan.due("u") == schedule.Due(sync=True, findings=True)


def test_success_resets_the_backoff() -> None:
    plan, _ = _plan()
    for _ in range(6):
        _recoverable(plan, "u")
    plan.succeeded("u", resync=RESYNC, refresh=REFRESH, findings_refreshed=True)
    assert _recoverable(plan, "u") <= 2.0


def test_a_pending_findings_refresh_does_not_shorten_a_backoff() -> None:
    plan, clock = _plan()
    plan.succeeded("u", resync=RESYNC, refresh=REFRESH, findings_refreshed=True)
    clock.now = 1000.0  # findings overdue
    for _ in range(5):
        _recoverable(plan, "u")
    assert not plan.due("u").sync
    clock.now += 32.0
    assert plan.due("u") == schedule.Due(sync=True, findings=True)  # the retry refreshes them too


@pytest.mark.parametrize(("tick", "most"), [(TICK, 6), (0.2, 6)])
def test_inspector_not_enabled_backs_off_instead_of_writing_every_tick(tick: float, most: int) -> None:
    """A Recoverable failure on every attempt (InspectorNotEnabled): each attempt is one UpdateImagePipeline."""
    plan, clock = _plan()
    first_minute = _run_timer(plan, clock, _recoverable, seconds=60, tick=tick)
    assert 4 <= len(first_minute) <= most, first_minute  # a write per tick would be 7 (or 301 at 0.2 s)
    plan, clock = _plan()
    hour = _run_timer(plan, clock, _recoverable, seconds=3600, tick=tick)
    assert len(hour) <= 8 + 3600 / 150  # the climb to the cap, then one per 2.5-5 min (a tick: 361)
    late_gaps = [b - a for (a, _), (b, _) in itertools.pairwise(hour[-5:])]
    assert all(150 <= gap <= 300 + tick for gap in late_gaps), late_gaps


def _status(reason: str, ok: bool = False) -> m.ImagePipelineStatus:
    ready = kstatus.make(kstatus.Type.READY, "True" if ok else "False", reason, f"because {reason}", 1)
    return m.ImagePipelineStatus(conditions=[ready])


def test_a_failure_warns_once_per_change_not_per_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    posted: list[str] = []
    monkeypatch.setattr(imagepipeline.kopf, "warn", lambda _body, *, reason, message: posted.append(reason))
    sequence = ["InspectorNotEnabled"] * 25 + ["Reconciled", "Reconciled", "Drifted", "Drifted", "Throttled"]
    previous = m.ImagePipelineStatus()
    for reason in sequence:
        current = _status(reason, ok=reason == "Reconciled")
        imagepipeline._warn_on_new_failure(object(), previous, current)  # type: ignore[arg-type]
        previous = current
    assert posted == ["InspectorNotEnabled", "Drifted", "Throttled"]
