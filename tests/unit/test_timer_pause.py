"""The resync timer's wait (``Runtime.pause``) lasts until the object is due, and never sleeps through what makes
it due sooner: an event, a spec change's reconcile, push intake failing, a policy's new verdict. At the shipped
tick (10 s), a pause that should end at once is given a second, so a lost wake-up fails here instead of costing
a tick (or a whole resync interval) in production.

Found end to end: an event that came while the create handler held the object, or before the timer's first
call, waited for the next tick (10 s) instead of the 2 s the schedule asks for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import kopf
import pytest
from kopf._cogs.aiokits import aioenums

from imagescan.handlers import runtime
from imagescan.models import imagepipeline as m
from imagescan.models import kstatus
from imagescan.reconcile import policy, schedule

TICK = runtime.Config().tick
UID = "uid-web"
PROMPTLY = 1.0
"""Far below the tick: the pause ended because it was woken, not because the tick passed."""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def shared(clock: Clock) -> AsyncIterator[runtime.Runtime]:
    made = runtime.Runtime(runtime.Config())
    made.schedule = schedule.Schedule(clock=clock)
    try:
        yield made
    finally:
        made.close()


def _stopped() -> aioenums.AsyncFlagWaiter[kopf.DaemonStoppingReason]:
    return aioenums.AsyncFlagWaiter(aioenums.FlagSetter())


def _reconciled(shared: runtime.Runtime, started: float | None = None) -> None:
    now = shared.schedule.now()
    shared.schedule.succeeded(UID, resync=600.0, refresh=900.0, findings_refreshed=True,
                              started=now if started is None else started)


async def _ends_promptly(pause: asyncio.Future[None] | asyncio.Task[None]) -> None:
    await asyncio.wait_for(pause, timeout=PROMPTLY)


def test_the_shipped_tick_is_what_a_lost_wake_up_would_cost() -> None:
    assert TICK == 10.0 and PROMPTLY < TICK


async def test_an_event_during_the_create_handlers_reconcile_is_acted_on_when_it_ends(
        shared: runtime.Runtime, clock: Clock) -> None:
    _reconciled(shared)
    lock = shared.lock(UID)
    await lock.acquire()  # an update handler is reconciling the object
    started = shared.schedule.now()
    clock.now += 0.5
    pause = asyncio.ensure_future(shared.pause(UID, _stopped(), TICK))
    await asyncio.sleep(0.05)
    assert shared.notify(UID)
    await _ends_promptly(pause)  # woken: the timer sees the lock and returns, kopf calls it again

    pause = asyncio.ensure_future(shared.pause(UID, _stopped(), TICK))  # still locked: waits up to a tick
    await asyncio.sleep(0.05)
    assert not pause.done()
    _reconciled(shared, started)  # the handler's reconcile read AWS before the event: it stays pending
    lock.release()
    shared.rescheduled(UID)
    await _ends_promptly(pause)
    assert shared.schedule.next_attempt(UID) == pytest.approx(schedule.EVENT_QUIET)


async def test_an_alarm_raised_while_the_timer_was_not_waiting_is_not_lost(shared: runtime.Runtime) -> None:
    _reconciled(shared)
    await shared.lock(UID).acquire()
    assert shared.notify(UID)  # between two calls of the timer (kopf's rest)
    await _ends_promptly(asyncio.ensure_future(shared.pause(UID, _stopped(), TICK)))

    pause = asyncio.ensure_future(shared.pause(UID, _stopped(), TICK))  # consumed: the next pause waits again
    await asyncio.sleep(0.05)
    assert not pause.done()
    pause.cancel()


async def test_before_its_first_reconcile_the_timer_waits_for_the_create_handler(shared: runtime.Runtime) -> None:
    pause = asyncio.ensure_future(shared.pause(UID, _stopped(), TICK))
    await asyncio.sleep(0.05)
    assert not pause.done()
    assert not shared.schedule.due(UID).sync  # the create handler reads everything; the timer must not repeat it
    _reconciled(shared)
    shared.rescheduled(UID)  # nothing due before the tick: the timer is left waiting
    await asyncio.sleep(0.05)
    assert not pause.done()
    assert shared.notify(UID)  # an event about the new object
    await _ends_promptly(pause)


async def test_a_stopped_timer_does_not_wait(shared: runtime.Runtime) -> None:
    setter: aioenums.FlagSetter[kopf.DaemonStoppingReason] = aioenums.FlagSetter()
    stopped = aioenums.AsyncFlagWaiter(setter)
    _reconciled(shared)
    pause = asyncio.ensure_future(shared.pause(UID, stopped, TICK))
    await asyncio.sleep(0.05)
    setter.set()
    await _ends_promptly(pause)


async def test_an_idle_objects_timer_waits_until_it_is_due_not_a_tick(shared: runtime.Runtime) -> None:
    _reconciled(shared)  # next due in about 10 min
    pause = asyncio.ensure_future(shared.pause(UID, _stopped(), tick=0.1))  # whatever the tick
    await asyncio.sleep(0.5)
    assert not pause.done()  # no timer call per tick for 1,000 idle objects
    pause.cancel()


async def test_a_spec_change_that_must_back_off_wakes_a_waiting_timer(shared: runtime.Runtime) -> None:
    _reconciled(shared)
    pause = asyncio.ensure_future(shared.pause(UID, _stopped(), TICK))
    await asyncio.sleep(0.05)
    shared.schedule.failed(UID, terminal=False, resync=600.0)  # the update handler's reconcile failed
    shared.rescheduled(UID)
    await _ends_promptly(pause)


async def test_push_intake_failing_wakes_the_objects_on_the_safety_net(shared: runtime.Runtime) -> None:
    shared.schedule.succeeded(UID, resync=600.0, refresh=900.0, findings_refreshed=True, started=shared.schedule.now())
    shared.schedule.succeeded(UID, resync=600.0, refresh=900.0, findings_refreshed=True,
                              safety_net=21600.0, started=shared.schedule.now())  # a second success: on the net
    pause = asyncio.ensure_future(shared.pause(UID, _stopped(), TICK))
    await asyncio.sleep(0.05)
    assert shared.poll_again() == 1
    await _ends_promptly(pause)
    assert (shared.schedule.next_attempt(UID) or 0) <= 600.0 * 1.1


def _written_compliance(shared: runtime.Runtime, verdict: policy.Compliance) -> None:
    condition = kstatus.make(kstatus.Type.POLICY_COMPLIANT, verdict.status, verdict.reason, verdict.message, 1)
    shared.remember(UID, m.ImagePipelineStatus(conditions=[condition]))


async def test_a_new_verdict_wakes_the_pipelines_whose_condition_it_changes(shared: runtime.Runtime) -> None:
    _reconciled(shared)
    pipeline = policy.Pipeline(name="web", labels={}, status=m.ImagePipelineStatus(), uid=UID)
    _written_compliance(shared, shared.compliance("team", "web", []))
    pause = asyncio.ensure_future(shared.pause(UID, _stopped(), TICK))
    await asyncio.sleep(0.05)
    assert shared.recheck_compliance("team", [pipeline], []) == 0  # the condition says what they recorded
    await asyncio.sleep(0.05)
    assert not pause.done()

    _written_compliance(shared, policy.Compliance("False", "PolicyViolated", "breaks no-criticals"))
    assert shared.recheck_compliance("team", [pipeline], []) == 1  # e.g. the policy was deleted
    await _ends_promptly(pause)
