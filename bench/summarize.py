"""Medians of several bench/scale.py runs as a Markdown table, for docs/benchmarks.md.

    python bench/summarize.py run1.json run2.json run3.json
"""

from __future__ import annotations

import json
import pathlib
import statistics
import sys
from typing import Any

ROWS = (
    ("seconds from first create to all Ready", "seconds_to_all_ready"),
    ("throughput (pipelines Ready per second)", "throughput_per_s"),
    ("p50 create→Ready (s)", "p50_create_to_ready_s"),
    ("p99 create→Ready (s)", "p99_create_to_ready_s"),
    ("AWS calls per pipeline, initial reconcile", "aws_calls_per_pipeline_initial"),
    ("AWS calls per pipeline per steady-state resync", "aws_calls_per_pipeline_per_resync"),
    ("operator CPU per pipeline (ms)", "cpu_ms_per_pipeline"),
    ("peak RSS of the operator process (MiB)", "peak_rss_mib"),
    ("status bytes per object (mean / max)", ("status_bytes_mean", "status_bytes_max")),
)


def main(paths: list[str]) -> int:
    runs = [json.loads(pathlib.Path(p).read_text()) for p in paths]
    print(f"Medians of {len(runs)} runs: {runs[0]['pipelines']} pipelines, {runs[0]['latency_ms']} ms AWS latency, "
          f"{runs[0]['workers']} workers.\n")
    print("| metric | imagescan operator | bare kopf |")
    print("|---|---|---|")
    for label, key in ROWS:
        print(f"| {label} | {_median(runs, 'operator', key)} | {_median(runs, 'baseline', key)} |")
    ratios = [r["throughput_ratio"] for r in runs if "throughput_ratio" in r]
    if ratios:
        print(f"| throughput vs bare kopf | {statistics.median(ratios):.3f}x | 1x |")
    return 0


def _median(runs: list[dict[str, Any]], who: str, key: str | tuple[str, ...]) -> str:
    if isinstance(key, tuple):
        return " / ".join(_median(runs, who, k) for k in key)
    values = [r[who][key] for r in runs if who in r and key in r[who]]
    if not values:
        return "-"
    value = statistics.median(values)
    return f"{value:g}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
