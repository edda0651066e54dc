"""The leader-election memory benchmark at smoke size, so it cannot rot: the pair must start as deployed (with
the webhook, so that both replicas keep admission indexes), the first replica hold the Lease, every object turn
Ready, the holder reconcile each exactly once and the standby none, and the RSS figures be read. Correctness
only; the figures live in docs/benchmarks.md, measured at 200 and 1,000 pipelines.

The benchmark starts a control plane of its own (tests/support/controlplane.py), so it needs the cached
binaries: without them this is skipped, or fails in CI, as every control-plane test.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from tests.conftest import ROOT
from tests.support import fixtures

PIPELINES = 5


def test_elected_benchmark_smoke(tmp_path: pathlib.Path) -> None:
    fixtures.own_control_plane()  # skips (or fails, in CI) when there are no control-plane binaries
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "bench/elected.py", "--pipelines", str(PIPELINES), "--latency-ms", "5", "--tick", "0.5",
         "--steady", "3", "--webhook", "--no-standalone", "--json", str(out), "--logs", str(tmp_path / "logs")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    elected = results["elected"]
    assert "standalone" not in results
    assert elected["ready"] == PIPELINES
    assert elected["checks"] == {
        "every_pipeline_created_once": True, "every_pipeline_turned_on": True, "one_update_per_pipeline": True,
        "processes_alive": True, "standby_reconciled_nothing": True, "holder_kept_the_lease": True,
        "no_rbac_refusals": True,
    }, elected["checks"]
    assert elected["aws_calls_initial_by_operation"]["UpdateImagePipeline"] == PIPELINES
    holder, standby = elected["processes"]["holder"], elected["processes"]["standby"]
    for figures in (holder, standby):
        assert figures["alive_at_end"]
        assert 0 < figures["rss_idle_mib"] <= figures["peak_rss_mib"]
        assert 0 < figures["rss_steady_mib"] <= figures["rss_steady_max_mib"] <= figures["peak_rss_mib"]
    # The holder runs a second, reconciling kopf operator on top of the standby's admission one.
    assert holder["peak_rss_mib"] > standby["peak_rss_mib"]
    assert "holder:" in done.stdout and "checks: all passed" in done.stdout
