"""AWS failing under the operator: throttling and 5xx on every call, and credentials that stop working.

The operator runs at its shipped defaults (tick 10 s, resync 10 min, findings refresh 15 min); the emulator
fails a share of every operation at random (seeded) and records every call, so what the operator did is read
off the emulator's call log rather than from the operator's own account of it.

Why the ceiling on calls per second holds (README, "Conditions and reasons" and "AWS call budget"): an object
is reconciled at most once per tick (its timer asks once per tick; a Recoverable failure backs off ≥ 2 s, so
never twice in one tick), plus once for its create event. One attempt makes at most ``CALLS_PER_ATTEMPT``
distinct calls (read, update, verify, images, image, two aggregations, top-list pages, ECR) and each call is
sent at most ``TRIES`` times (the throttle gate gives up after 4 attempts, botocore's standard mode after 3).
So in any tick-long window the emulator sees at most objects * CALLS_PER_ATTEMPT * TRIES calls, and after
everything is Ready none at all until the next resync.
"""

from __future__ import annotations

import itertools
import statistics
import time
from typing import Any

import pytest

from imagescan import GROUP, VERSION, runner
from imagescan.emulator import server
from imagescan.reconcile import schedule
from tests.integration import harness
from tests.reliability import support

TICK = 10.0
BACKOFF_BASE = schedule.BACKOFF_BASE
CALLS_PER_ATTEMPT = 10
TRIES = 4
FAULTS = ("CallRateLimitExceededException", "ServiceUnavailableException", "InternalServerException")
FINDINGS = {"CRITICAL": 1, "HIGH": 2, "MEDIUM": 2, "LOW": 1, "INFORMATIONAL": 1, "UNTRIAGED": 1}
HARD = 8  # objects whose every call fails (Conflict: not retried by the client), to watch their back-off
HARD_WINDOW = 95.0  # seconds their back-off is watched: attempts at ≈ 0, 10, 20, 30, 40-50, 60-90
QUIET = 12.0  # seconds watched after all are Ready: a tick and a bit


def _seed(emulator: server.Emulator, count: int, prefix: str) -> list[str]:
    return [emulator.world.add_pipeline(name=f"{prefix}-{i}", container=i % 2 == 1, scanning_enabled=False,
                                        findings=FINDINGS) for i in range(count)]


def _create_all(pipelines: harness.Pipelines, arns: list[str]) -> list[str]:
    names = []
    for arn in arns:
        name = arn.rsplit("/", 1)[-1]
        pipelines.create(name, {"pipelineArn": arn, "scanning": {"enabled": True}})
        names.append(name)
    return names


def _ready(pipelines: harness.Pipelines, names: list[str]) -> list[str]:
    """The names whose Ready condition is True for their current generation."""
    ready = []
    listed = pipelines.api.list_namespaced_custom_object(GROUP, VERSION, pipelines.namespace, harness.PLURAL)
    for item in listed["items"]:
        conditions = {c["type"]: c for c in (item.get("status") or {}).get("conditions", [])}
        current = (item.get("status") or {}).get("observedGeneration") == item["metadata"]["generation"]
        if current and conditions.get("Ready", {}).get("status") == "True":
            ready.append(item["metadata"]["name"])
    return sorted(set(ready) & set(names))


def _wait_all_ready(pipelines: harness.Pipelines, names: list[str], timeout: float) -> float:
    started = time.monotonic()
    try:
        harness.wait_for(lambda: len(_ready(pipelines, names)) == len(names) or None, timeout,
                         f"all {len(names)} Ready")
    except AssertionError as exc:
        late = sorted(set(names) - set(_ready(pipelines, names)))
        reasons = {name: (pipelines.condition(name) or {}).get("reason") for name in late[:10]}
        raise AssertionError(f"{exc}: not Ready: {reasons}") from None
    return time.monotonic() - started


def _watch_backoff(emulator: server.Emulator, hard: list[str], start: float, timeout: float) -> None:
    """Keep AWS failing for the always-failing objects until each has had ``HARD_WINDOW`` seconds from its own
    first attempt: under a big storm kopf gets to their create events late, and a window counted from the first
    create would then show one or two attempts, not the back-off."""
    deadline = start + timeout
    while time.monotonic() < deadline:
        firsts = [support.attempts(emulator.call_log.entries(), arn)[:1] for arn in hard]
        if all(firsts) and time.monotonic() >= max(first[0] for first in firsts) + HARD_WINDOW:
            return
        time.sleep(1.0)
    raise AssertionError(f"the always-failing objects were not attempted within {timeout} s")


def _backoff_figures(calls: list[Any], hard: list[str]) -> dict[str, list[float]]:
    return {arn.rsplit("/", 1)[-1]: support.spacings(support.attempts(calls, arn)) for arn in hard}


def _assert_backoff_grows_with_jitter(spacing: dict[str, list[float]]) -> None:
    """Never sooner than the back-off allows (≥ half of 2 s, 4 s, 8 s … after the 1st, 2nd, 3rd … failure),
    spacing that ends at least 1.8x its shortest, and not the same schedule for every object (the jittered
    delays land on different ticks). The first gap depends on when kopf got to the create event, so the
    sequence is only required to be non-decreasing from the second gap on."""
    for name, gaps in spacing.items():
        assert len(gaps) >= 4, f"{name}: too few attempts to see back-off: {gaps}"
        for failures, gap in enumerate(gaps, start=1):
            assert gap >= BACKOFF_BASE * 2 ** (failures - 1) / 2 - 0.5, f"{name}: retried too soon: {gaps}"
        assert all(b >= a - 2.0 for a, b in itertools.pairwise(gaps[1:])), f"{name}: spacing shrank: {gaps}"
        assert gaps[-1] >= 1.8 * min(gaps), f"{name}: spacing did not grow: {gaps}"
    distinct = {tuple(round(g / TICK) for g in gaps) for gaps in spacing.values()}
    assert len(distinct) > 1, f"every object retried on the same schedule (no jitter): {spacing}"


def run_fault_storm(emulator: server.Emulator, pipelines: harness.Pipelines, count: int, rate: float,
                    ready_timeout: float) -> dict[str, Any]:
    """``count`` objects reconcile under ``rate`` random faults on every operation, plus ``HARD`` that always
    fail until AWS is healed (all faults cleared) and they are asked to reconcile; returns the figures."""
    arns, hard = _seed(emulator, count, "storm"), _seed(emulator, HARD, "stuck")
    emulator.inject_faults(rate=rate, codes=FAULTS)
    emulator.fail_pipelines(hard, codes=("ResourceInUseException",))
    start = time.monotonic()
    names = _create_all(pipelines, arns)
    hard_names = _create_all(pipelines, hard)
    to_ready = _wait_all_ready(pipelines, names, ready_timeout)
    _watch_backoff(emulator, hard, start, ready_timeout)
    healed = time.monotonic()
    # AWS works again, for everyone: a poke that met a random fault would otherwise wait out a back-off that
    # has grown to 1-2 min by now (by design), longer than this test wants to wait.
    emulator.clear_faults()
    for name in hard_names:  # reconcile now, as a user would once AWS works again
        pipelines.patch(name, {"metadata": {"annotations": {"imagescan.io/reconcile-requested-at": "healed"}}})
    heal_to_ready = _wait_all_ready(pipelines, names + hard_names, 60.0)
    converged = time.monotonic()
    time.sleep(QUIET)
    calls = emulator.call_log.entries()
    storm = [c for c in calls if c.at < converged]
    per_second = support.rates(storm, start, converged, TICK)
    gaps = support.retry_gaps(calls, "CallRateLimitExceededException")
    return {
        "objects": count, "always_failing": HARD, "fault_rate": rate, "faulted_calls": sum(1 for c in calls if c.error),
        "calls": len(storm), "seconds_to_all_ready": round(to_ready, 1),
        "seconds_healed_to_ready": round(heal_to_ready, 1), "seconds_create_to_converged": round(converged - start, 1),
        "calls_per_s_peak_10s": max(per_second), "calls_per_s_mean": round(len(storm) / (converged - start), 1),
        "ceiling_calls_per_s": (count + HARD) * CALLS_PER_ATTEMPT * TRIES / TICK,
        "calls_after_ready": len([c for c in calls if c.at >= converged]),
        "backoff_spacing_s": _backoff_figures([c for c in calls if c.at < healed], hard),
        "throttle_retry_gap_mean_s": {n: round(statistics.mean(v), 2) for n, v in sorted(gaps.items()) if v},
        "throttle_retry_gap_samples": {n: len(v) for n, v in sorted(gaps.items())},
        "not_ready": sorted(set(names + hard_names) - set(_ready(pipelines, names + hard_names))),
    }


def assert_storm(result: dict[str, Any]) -> None:
    assert result["not_ready"] == []
    assert result["faulted_calls"] > 0
    assert result["calls_per_s_peak_10s"] <= result["ceiling_calls_per_s"], result
    assert result["calls_after_ready"] == 0, "calls after everything was Ready: a retry loop"
    _assert_backoff_grows_with_jitter(result["backoff_spacing_s"])
    means = result["throttle_retry_gap_mean_s"]
    if result["throttle_retry_gap_samples"].get(2, 0) >= 10:  # full jitter: mean 0.5 s, then 1 s, then 2 s
        assert means[2] > means[1], means


@pytest.mark.parametrize(("count", "ready_timeout", "label"), [
    (40, 150.0, "faults-ci"),
    pytest.param(200, 400.0, "faults-soak", marks=pytest.mark.soak),
], ids=["40", "200"])
def test_throttling_and_5xx_on_every_call(
        operator: runner.InThread, emulator: server.Emulator, pipelines: harness.Pipelines,
        count: int, ready_timeout: float, label: str,
) -> None:
    result = run_fault_storm(emulator, pipelines, count=count, rate=0.3, ready_timeout=ready_timeout)
    support.figures(label, **result)
    assert_storm(result)


CREDENTIAL_FAULTS = ("AccessDeniedException", "ExpiredTokenException", "UnrecognizedClientException")


def test_lost_credentials_stall_and_recover_on_request(
        operator: runner.InThread, emulator: server.Emulator, pipelines: harness.Pipelines,
) -> None:
    arns = _seed(emulator, 3, "creds")
    emulator.inject_faults(rate=1.0, codes=CREDENTIAL_FAULTS)
    names = _create_all(pipelines, arns)
    for name in names:
        pipelines.wait_condition(name, "Stalled", "True", "AccessDenied", timeout=30)
        assert pipelines.condition(name, "Ready")["reason"] == "AccessDenied"  # type: ignore[index]
    stalled_at = time.monotonic()
    time.sleep(QUIET)
    later = emulator.call_log.entries(since=stalled_at)
    codes = sorted({c.error for c in emulator.call_log.entries() if c.error})
    emulator.clear_faults()
    for name in names:
        pipelines.patch(name, {"metadata": {"annotations": {"imagescan.io/reconcile-requested-at": "creds-back"}}})
    took = _wait_all_ready(pipelines, names, 30.0)
    for name, arn in zip(names, arns, strict=True):
        assert emulator.world.pipeline(arn)["imageScanningConfiguration"]["imageScanningEnabled"] is True
        assert (pipelines.get(name) or {})["status"]["lastHandledReconcileAt"] == "creds-back"
    support.figures("credentials-ci", objects=len(names), codes_seen=codes, calls_while_stalled=len(later),
                    seconds_to_ready_after_request=round(took, 1))
    assert later == [], "a Stalled object called AWS before its next resync"


@pytest.mark.soak
def test_lost_credentials_recover_at_next_resync(
        operator: runner.InThread, emulator: server.Emulator, pipelines: harness.Pipelines,
) -> None:
    """No request: the next resync (10 min ± 10 %) finds the credentials working again."""
    arns = _seed(emulator, 2, "resync")
    emulator.inject_faults(rate=1.0, codes=("ExpiredTokenException",))
    names = _create_all(pipelines, arns)
    for name in names:
        pipelines.wait_condition(name, "Stalled", "True", "AccessDenied", timeout=30)
    stalled = time.monotonic()
    emulator.clear_faults()
    _wait_all_ready(pipelines, names, 11 * 60 + 30)
    took = time.monotonic() - stalled
    support.figures("credentials-resync-soak", objects=len(names), seconds_stalled_to_ready=round(took, 1))
    assert 9 * 60 - 15 <= took <= 11 * 60 + 30
