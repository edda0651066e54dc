"""How often a failing ImagePipeline calls AWS: the real operator at its shipped defaults (resync 10 min,
findings refresh 15 min, tick 10 s), counted at the emulator over a window of about a minute.

Terminal failures (Stalled) are re-read once per resync interval, so nothing in the window after the first
attempt; Recoverable ones back off (2 s doubling, checked once per tick), so a handful of attempts, not one per
tick, and never sooner than the "next attempt in Ns" the operator logged; a failure posts one Warning, not
one per attempt.
"""

from __future__ import annotations

import itertools
import logging
import re
import time

import pytest

from imagescan.emulator import server
from imagescan.handlers import runtime
from tests.integration import harness

WINDOW = 62.0  # seconds watched after the first attempt: six ticks and a bit
TICK = runtime.Config().tick
assert TICK == 10.0, "these figures are for the shipped tick"
ANNOUNCED = re.compile(r"next attempt in (\d+)s$")


def _watch_reconciles(pipelines: harness.Pipelines, name: str, seconds: float) -> list[float]:
    """When the object's status says AWS was read (lastSynced changed), in seconds from the start."""
    start = time.monotonic()
    seen: list[float] = []
    last: str | None = None
    while (elapsed := time.monotonic() - start) < seconds:
        synced = ((pipelines.get(name) or {}).get("status") or {}).get("lastSynced")
        if synced is not None and synced != last:
            seen.append(round(elapsed, 1))
            last = synced
        time.sleep(0.25)
    return seen


def _announced(caplog: pytest.LogCaptureFixture, name: str) -> list[tuple[float, float]]:
    """(when, delay) of every failed attempt on ``name``, from the operator's "next attempt in Ns" log."""
    found = []
    for record in caplog.records:
        match = ANNOUNCED.search(record.getMessage())
        if match and getattr(record, "k8s_ref", {}).get("name") == name:
            found.append((record.created, float(match.group(1))))
    return found


def _assert_never_sooner_than_announced(caplog: pytest.LogCaptureFixture, name: str) -> None:
    # Each attempt logs when it ends; the next cannot end before the delay announced at the previous end.
    # The announcement is rounded to whole seconds.
    for (ended, delay), (next_ended, _) in itertools.pairwise(_announced(caplog, name)):
        assert next_ended - ended >= delay - 0.5, f"{name}: retried after {next_ended - ended:.1f}s, said {delay}s"


def _quiet(attempts: list[float], window: float) -> float:
    """The longest stretch without an attempt, counting the end of the window."""
    return max(b - a for a, b in itertools.pairwise([*attempts, window]))


def _warnings(pipelines: harness.Pipelines, name: str) -> list[str]:
    return [e.reason for e in pipelines.events(name) if e.type == "Warning"]


def _poke(pipelines: harness.Pipelines, name: str, value: str) -> None:
    """Reconcile now, as a user would."""
    pipelines.patch(name, {"metadata": {"annotations": {"imagescan.io/reconcile-requested-at": value}}})


@pytest.fixture(autouse=True)
def _operator_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kopf.objects")


def test_stalled_objects_call_aws_once_per_resync(
        emulator: server.Emulator, pipelines: harness.Pipelines, caplog: pytest.LogCaptureFixture,
) -> None:
    """A pipeline that does not exist (by name and by ARN) and an update AWS rejects: one call each, then
    nothing until the next resync (10 min), however many ticks pass."""
    missing_arn = f"arn:aws:imagebuilder:us-east-1:{emulator.world.account_id}:image-pipeline/nowhere"
    rejected = emulator.world.add_pipeline(name="rejected", container=False, scanning_enabled=False, findings=1)
    emulator.inject_faults(rate=1.0, codes=("InvalidParameterValueException",),
                           operations=("UpdateImagePipeline",))
    pipelines.create("by-name", {"pipelineName": "ghost"})
    pipelines.create("by-arn", {"pipelineArn": missing_arn})
    pipelines.create("rejected", {"pipelineArn": rejected})
    for name, reason in (("by-name", "PipelineNotFound"), ("by-arn", "PipelineNotFound"),
                         ("rejected", "InvalidRequest")):
        pipelines.wait_condition(name, "Stalled", "True", reason)

    time.sleep(WINDOW)

    calls = dict(emulator.calls)
    print(f"3 stalled objects, calls from creation to {WINDOW:.0f}s after Stalled: {calls}")
    assert calls.get("ListImagePipelines") == 1, calls  # by-name: the lookup, once
    assert calls.get("UpdateImagePipeline") == 1, calls  # rejected: sent once, not once per tick
    assert calls.get("GetImagePipeline") == 2, calls  # by-arn once, rejected once (before its update)
    for name, reason in (("by-name", "PipelineNotFound"), ("by-arn", "PipelineNotFound"),
                         ("rejected", "InvalidRequest")):
        assert _warnings(pipelines, name) == [reason]
        [(_, delay)] = _announced(caplog, name)
        assert 540 <= delay <= 660  # the resync interval, jittered


def test_inspector_not_enabled_backs_off_and_warns_once(
        emulator: server.Emulator, pipelines: harness.Pipelines, caplog: pytest.LogCaptureFixture,
) -> None:
    emulator.world.set_inspector(emulator.world.account_id, {"ECR": "DISABLED", "EC2": "DISABLED"})
    arn = emulator.world.add_pipeline(name="svc", container=True, scanning_enabled=False, findings=2)
    pipelines.create("svc", {"pipelineArn": arn,
                             "scanning": {"ecr": {"repositoryName": "image-scans", "containerTags": ["scan"]}}})
    pipelines.wait_condition("svc", "Reconciling", "True", "InspectorNotEnabled")

    attempts = _watch_reconciles(pipelines, "svc", WINDOW)

    updates = emulator.calls["UpdateImagePipeline"]
    print(f"svc: {updates} UpdateImagePipeline in {WINDOW:.0f}s, attempts at {attempts}")  # the figures (-rP)
    # Back-off 2, 4, 8, 16, 32 s, each drawn from the upper half of its step, acted on when due (the timer waits
    # for the schedule's time, checking at least every tick): attempts at about 0, 2, 5, 11, 23, 47 s.
    # One per tick would be 7; the bug was 25 in 50 s at the sandbox's 2 s tick.
    assert 4 <= updates <= 6, f"{updates} UpdateImagePipeline calls in {WINDOW:.0f}s (attempts at {attempts})"
    assert len(attempts) == updates  # every attempt is one write, no other writes
    assert _quiet(attempts, WINDOW) >= 16.0, f"no back-off visible: attempts at {attempts}"  # the 5th step
    _assert_never_sooner_than_announced(caplog, "svc")
    assert _warnings(pipelines, "svc") == ["InspectorNotEnabled"]  # not one per attempt, and no Drifted

    emulator.world.set_inspector(emulator.world.account_id, {"ECR": "ENABLED", "EC2": "ENABLED"})
    _poke(pipelines, "svc", "inspector-on")
    obj = pipelines.wait_ready("svc")
    assert obj["status"]["scanning"]["ecr"] == {"repositoryName": "image-scans", "containerTags": ["scan"]}
    assert pipelines.condition("svc", "Reconciling") is None
    assert _warnings(pipelines, "svc") == ["InspectorNotEnabled"]


def test_throttled_pipeline_backs_off(
        emulator: server.Emulator, pipelines: harness.Pipelines, caplog: pytest.LogCaptureFixture,
) -> None:
    arn = emulator.world.add_pipeline(name="busy", container=False, scanning_enabled=True, findings=1)
    emulator.inject_faults(rate=1.0, codes=("CallRateLimitExceededException",), operations=("GetImagePipeline",))
    pipelines.create("busy", {"pipelineArn": arn})
    pipelines.wait_condition("busy", "Reconciling", "True", "Throttled", timeout=30)

    attempts = _watch_reconciles(pipelines, "busy", WINDOW)

    print(f"busy: {emulator.calls['GetImagePipeline']} GetImagePipeline in {WINDOW:.0f}s, attempts at {attempts}")
    # Each attempt is up to 4 throttled calls (the client's own retries); one attempt per tick would be 7.
    assert len(attempts) <= 6, f"attempts at {attempts}"
    assert emulator.calls["GetImagePipeline"] <= 4 * (len(attempts) + 1)
    announced = [delay for _, delay in _announced(caplog, "busy")]
    assert len(announced) >= 3 and announced == sorted(announced), announced  # doubling: 2, 4, 8, 16 … s
    _assert_never_sooner_than_announced(caplog, "busy")
    assert _warnings(pipelines, "busy") == ["Throttled"]

    emulator.clear_faults()
    _poke(pipelines, "busy", "quiet-now")
    pipelines.wait_ready("busy")
