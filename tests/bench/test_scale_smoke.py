"""The scale benchmark at smoke size, so it cannot rot: it must run and its numbers must be sane.

Correctness only; the time goals live in docs/benchmarks.md, measured at full size.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from tests.conftest import ROOT


def test_scale_benchmark_smoke(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "bench/scale.py", "--pipelines", "20", "--latency-ms", "5", "--resync", "1m",
         "--tick", "0.5", "--resyncs", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    ours, bare = results["operator"], results["baseline"]
    assert ours["ready"] == bare["ready"] == 20
    assert 0 < ours["aws_calls_per_pipeline_per_resync"] <= 2
    assert ours["aws_calls_per_pipeline_initial"] >= 3  # read, update, verify at least
    assert 0 < ours["status_bytes_max"] <= 32 * 1024
    assert ours["peak_rss_mib"] > 0 and results["throughput_ratio"] > 0
