"""The push benchmark at smoke size, so it cannot rot: it must run and its numbers must be sane.

Correctness only, at the shipped tick and spec intervals: every sampled change reaches status well within a tick
and a half, and while nothing changes push mode makes no periodic AWS call at all (a window this short sees no
10-minute resync in poll mode either, so "push ≤ poll" is checked but cannot fail on its own; the full-size
figures, with 20-minute windows, live in docs/benchmarks.md). moto's server is a test dependency, like the
emulator, so this never skips.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from tests.conftest import ROOT

PIPELINES = 10
SAMPLES = 5
FRESH_WITHIN = 15.0


def test_push_benchmark_smoke(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "bench/push.py", "--pipelines", str(PIPELINES), "--samples", str(SAMPLES),
         "--window", "15s", "--latency-ms", "5", "--settle", "2", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    push, poll = results["push"], results["poll"]
    assert push["ready"] == poll["ready"] == PIPELINES
    fresh = push["freshness"]
    assert fresh["pipelines_sampled"] == SAMPLES
    for kind in ("new_build", "changed_findings"):
        assert fresh[kind]["missed"] == 0
        assert 0 < fresh[kind]["max_s"] <= FRESH_WITHIN, fresh[kind]
        # one refresh per change: read the pipeline once, a few more calls for the build and its findings
        assert fresh[kind]["aws_calls_by_operation"]["GetImagePipeline"] == SAMPLES, fresh[kind]
        assert fresh[kind]["sqs_calls"].get("DeleteMessageBatch", 0) >= 1
    steady_push, steady_poll = push["steady"], poll["steady"]
    assert steady_push["aws_calls"] == 0, steady_push
    assert steady_push["aws_calls_per_pipeline_per_hour"] <= steady_poll["aws_calls_per_pipeline_per_hour"]
    assert steady_poll["sqs_calls"] == {}
    assert push["events"]["failed"] == {} and push["events"]["pending"] == 0
    assert "| freshness, new build" in done.stdout
