"""Soak: many objects through resyncs at the shipped intervals with a trickle of AWS faults, watching the
operator process for leaks.

The operator runs as a subprocess (``tests.reliability.counted_run``: ``imagescan run`` plus a count of its
asyncio tasks every 10 s); the test samples ``/proc/<pid>/status`` (VmRSS, Threads) every 10 s. The resync
interval (10 min) and findings refresh (15 min) are the shipped ones, so a 30-minute run sees about three
resyncs and two findings refreshes per object. Growth is measured from a baseline minute (5, or 1 for runs
shorter than 10 minutes: the create storm is over by then) to the end.

Size and length: ``IMAGESCAN_SOAK_OBJECTS`` (default 1000) and ``IMAGESCAN_SOAK_MINUTES`` (default 30).
"""

from __future__ import annotations

import os
import pathlib
import time
from typing import Any

import pytest

from imagescan.emulator import server
from tests.integration import harness
from tests.reliability import support
from tests.reliability.test_faults import FAULTS, FINDINGS, _ready
from tests.support.fixtures import Cluster

pytestmark = pytest.mark.soak
SAMPLE_S = 10.0


def _tasks(path: pathlib.Path) -> list[tuple[float, int]]:
    if not path.exists():
        return []
    return [(float(a), int(b)) for a, b in (line.split() for line in path.read_text().splitlines() if line)]


def _at(samples: list[Any], moment: float) -> Any:
    """The first sample at or after ``moment`` (monotonic)."""
    return next(s for s in samples if (s.at if hasattr(s, "at") else s[0]) >= moment)


def _create(pipelines: harness.Pipelines, arns: list[str]) -> list[str]:
    names = []
    for arn in arns:
        name = arn.rsplit("/", 1)[-1]
        pipelines.create(name, {"pipelineArn": arn})
        names.append(name)
    return names


def test_soak(cluster: Cluster, emulator: server.Emulator, pipelines: harness.Pipelines,
              tmp_path: pathlib.Path) -> None:
    objects = int(os.environ.get("IMAGESCAN_SOAK_OBJECTS", "1000"))
    minutes = float(os.environ.get("IMAGESCAN_SOAK_MINUTES", "30"))
    baseline_min = 5.0 if minutes >= 10 else 1.0
    arns = [emulator.world.add_pipeline(name=f"soak-{i}", container=i % 2 == 1, scanning_enabled=i % 4 == 0,
                                        findings=FINDINGS) for i in range(objects)]
    emulator.inject_faults(rate=0.01, codes=FAULTS)
    tasks_file = tmp_path / "tasks.txt"
    os.environ["IMAGESCAN_TASKS_FILE"] = str(tasks_file)
    assert emulator.endpoint_url
    proc = support.OperatorProcess(cluster.operator_kubeconfig, emulator.endpoint_url, cluster.namespace,
                                   tmp_path / "operator.log", module="tests.reliability.counted_run").start()
    samples: list[support.ProcSample] = []
    try:
        start = time.monotonic()
        names = _create(pipelines, arns)
        created = time.monotonic()
        all_ready_after: float | None = None
        while time.monotonic() < start + minutes * 60:
            samples.append(support.sample(proc.pid))
            if all_ready_after is None and len(_ready(pipelines, names)) == len(names):
                all_ready_after = time.monotonic() - start
            time.sleep(SAMPLE_S)
        not_ready = sorted(set(names) - set(_ready(pipelines, names)))
        assert proc.alive(), "the operator died"
    finally:
        proc.stop()
        os.environ.pop("IMAGESCAN_TASKS_FILE", None)
    base, end = _at(samples, start + baseline_min * 60), samples[-1]
    tasks = _tasks(tasks_file)
    base_tasks, end_tasks = _at(tasks, start + baseline_min * 60)[1], tasks[-1][1]
    calls = emulator.call_log.entries()
    result = {
        "objects": objects, "minutes": minutes, "fault_rate": 0.01, "seconds_to_create": round(created - start, 1),
        "seconds_to_all_ready": all_ready_after, "not_ready_at_end": len(not_ready),
        "rss_mib_baseline": round(base.rss_kib / 1024, 1), "rss_mib_end": round(end.rss_kib / 1024, 1),
        "rss_mib_peak": round(max(s.rss_kib for s in samples) / 1024, 1),
        "rss_growth_pct": round(100 * (end.rss_kib - base.rss_kib) / base.rss_kib, 2),
        "threads_baseline": base.threads, "threads_end": end.threads, "threads_max": max(s.threads for s in samples),
        "tasks_baseline": base_tasks, "tasks_end": end_tasks, "tasks_max": max(n for _, n in tasks),
        "aws_calls": len(calls), "faulted_calls": sum(1 for c in calls if c.error),
        "get_pipeline_calls": sum(1 for c in calls if c.operation == "GetImagePipeline"),
        "calls_per_s_after_baseline": round(len([c for c in calls if c.at >= base.at]) / (end.at - base.at), 2),
        "stale_writes": len(emulator.updates.stale()), "refusals": proc.refusals(),
        "baseline_minute": baseline_min,
    }
    support.figures("soak", **result)
    assert not_ready == []
    assert result["rss_growth_pct"] < 10.0
    assert end.threads <= base.threads + 2
    assert end_tasks <= base_tasks + max(10, base_tasks // 50)
    assert result["stale_writes"] == 0 and result["refusals"] == []
