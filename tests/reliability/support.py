"""What the reliability suites share: the operator as a subprocess, a process sampler, call-log arithmetic and
the figures each suite prints for docs/reliability.md.

The operator runs exactly as a user runs it (``imagescan run --kubeconfig <ServiceAccount kubeconfig>
--aws-endpoint-url <emulator> -n <ns>``, dummy AWS credentials from the environment, the shipped tick and
intervals), so that SIGKILL, RSS and thread counts are those of a real operator process.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from imagescan.emulator import audit

FORBIDDEN = re.compile(r"\b403\b|forbidden", re.IGNORECASE)
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")  # its milliseconds can read 403


class OperatorProcess:
    """``imagescan run`` in a subprocess; every start appends to one log file."""

    def __init__(self, kubeconfig: pathlib.Path, endpoint_url: str, namespace: str, log_path: pathlib.Path,
                 extra_args: Sequence[str] = (), module: str = "imagescan.cli") -> None:
        self.args = [sys.executable, "-m", module, "run", "--kubeconfig", str(kubeconfig),
                     "--aws-endpoint-url", endpoint_url, "-n", namespace, *extra_args]
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.started_at = 0.0

    def start(self) -> OperatorProcess:
        assert self.process is None, "already running"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start {self.starts + 1} ====\n".encode())
            log.flush()
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.started_at = time.monotonic()
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, like an OOM kill or a node loss."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None
        self.kills += 1

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait (kopf stops its handlers); SIGKILL if it does not stop in time."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def refusals(self) -> list[str]:
        """Log lines that say the ServiceAccount was refused (the shipped RBAC lacks a rule)."""
        return [line for line in self.log_text().splitlines() if FORBIDDEN.search(TIMESTAMP.sub("", line))][:10]


@dataclasses.dataclass(frozen=True)
class ProcSample:
    at: float
    rss_kib: int
    threads: int


def sample(pid: int) -> ProcSample:
    """VmRSS and thread count from /proc/<pid>/status."""
    fields: dict[str, str] = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return ProcSample(at=time.monotonic(), rss_kib=int(fields["VmRSS"].split()[0]), threads=int(fields["Threads"]))


# --- call-log arithmetic ---------------------------------------------------------------------------------------


def rates(calls: Sequence[audit.Call], start: float, end: float, window: float) -> list[float]:
    """Calls per second in consecutive windows of ``window`` seconds from ``start`` to ``end``."""
    count = max(1, int((end - start) // window))
    buckets = [0] * count
    for call in calls:
        index = int((call.at - start) // window)
        if 0 <= index < count:
            buckets[index] += 1
    return [n / window for n in buckets]


def attempts(calls: Iterable[audit.Call], arn: str, operation: str = "GetImagePipeline") -> list[float]:
    """When ``operation`` named ``arn``: one per reconcile attempt when that call is not retried."""
    return [call.at for call in calls if call.arn == arn and call.operation == operation]


def spacings(times: Sequence[float]) -> list[float]:
    return [round(b - a, 1) for a, b in itertools.pairwise(times)]


def retry_gaps(calls: Sequence[audit.Call], code: str, horizon: float = 10.0) -> dict[int, list[float]]:
    """Seconds between a call that failed with ``code`` and the next call of the same operation on the same
    ARN (its retry), by how many times in a row it had failed: the client-side back-off."""
    gaps: dict[int, list[float]] = {}
    streak: dict[tuple[str, str], tuple[float, int]] = {}
    for call in calls:
        if call.arn is None:
            continue
        key = (call.operation, call.arn)
        previous = streak.pop(key, None)
        if previous is not None and call.at - previous[0] <= horizon:
            gaps.setdefault(previous[1], []).append(call.at - previous[0])
        if call.error == code:
            failures = previous[1] + 1 if previous is not None and call.at - previous[0] <= horizon else 1
            streak[key] = (call.at, failures)
    return gaps


def figures(suite: str, **values: Any) -> None:
    """Print one JSON line of figures (pytest -s / -rP shows it; docs/reliability.md quotes it)."""
    print(f"\nFIGURES {suite} {json.dumps(values, sort_keys=True, default=str)}", flush=True)
    target = os.environ.get("IMAGESCAN_RELIABILITY_FIGURES")
    if target:
        with open(target, "a") as out:
            out.write(json.dumps({"suite": suite, **values}, sort_keys=True, default=str) + "\n")
