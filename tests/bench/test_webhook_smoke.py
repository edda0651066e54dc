"""The webhook load generator at smoke size against the real operator, so it cannot rot: every review must
get its answer, the denied image denied and the clean one allowed. Correctness only; the latency figures
live in docs/benchmarks.md, measured at 200 rps."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from tests.admission.conftest import NAMESPACE, Gate, gate
from tests.conftest import ROOT

__all__ = ["gate"]  # the admission tests' module-scoped operator with its webhook


def test_webhook_benchmark_smoke(gate: Gate, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "bench/webhook.py", "--url", f"https://localhost:{gate.port}/validate",
         "--ca", str(gate.ca), "--image", gate.images["clean"], "--image", gate.images["denied"],
         "--namespace", NAMESPACE, "--rate", "20", "--duration", "3", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert results["sent"] == results["answered"] == 60 and results["errors"] == 0, results
    assert results["allowed"] == results["denied"] == 30
    assert 0 < results["latency_ms"]["p50"] <= results["latency_ms"]["p99"] <= results["latency_ms"]["max"]
    assert "latency ms: p50" in done.stdout
