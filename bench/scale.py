"""Scale benchmark: how fast N ImagePipelines converge, and what that costs in AWS calls and memory.

    python bench/scale.py --pipelines 1000 --latency-ms 50

Four processes, so that nobody's CPU or memory is counted against anybody else: the benchmark itself with
the embedded Kubernetes API server; the AWS emulator (`python -m imagescan.emulator`, driven through its
/_emulator/ control endpoints); the operator under test (`imagescan run`); and, for the baseline, a bare kopf
operator (bench/bare_operator.py: same server, same objects, a handler that only patches status).
Reported:

- seconds from the first create to all Ready, and p50 / p99 create→Ready;
- AWS calls per pipeline for the initial reconcile, and per steady-state resync (from the emulator's counter);
- peak RSS (VmHWM) of the operator process; status bytes per object;
- our throughput as a ratio of the baseline's;
- with --rate-limit-tps (AWS's per-operation quota, emulated as a token bucket per operation that answers the
  service's throttling error past it): the floor that quota sets on the initial reconcile (for each operation,
  the calls it needed ÷ TPS; the slowest operation sets the floor), seconds to all Ready against it
  (speed_vs_floor = floor ÷ seconds, 1.0 = as fast as the quota allows) and the calls refused.

Results go to stdout as a table and, with --json, to a file. Times are wall-clock: run on an idle machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from imagescan import GROUP, VERSION, apiserver, crdgen
from imagescan.models import resources

HERE = pathlib.Path(__file__).resolve().parent
PLURAL = "imagepipelines"
NAMESPACE = "bench"
WARMUP = "bench-warmup"
ARN_PREFIX = "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/"  # the emulator's default account


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    results: dict[str, Any] = {"pipelines": args.pipelines, "latency_ms": args.latency_ms, "workers": args.workers}
    results["operator"] = measure(args, baseline=False)
    if not args.no_baseline:
        results["baseline"] = measure(args, baseline=True)
        results["throughput_ratio"] = round(
            results["operator"]["throughput_per_s"] / results["baseline"]["throughput_per_s"], 3)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["operator"]["ready"] == args.pipelines else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="emulated AWS latency per call")
    parser.add_argument("--workers", type=int, default=50, help="operator threads for AWS calls")
    parser.add_argument("--findings", type=int, default=60, help="findings per image (all six severities)")
    parser.add_argument("--resync", default="1m",
                        help="resyncInterval of the objects, for the steady state (the CRD allows 1m..168h)")
    parser.add_argument("--tick", type=float, default=10.0, help="the operator's --tick (its default: 10)")
    parser.add_argument("--resyncs", type=int, default=2, help="steady-state resync periods to count calls over")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up waiting for Ready after this")
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare kopf baseline")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results here")
    parser.add_argument("--operator-log", type=pathlib.Path, help="append the operators' output here")
    parser.add_argument("--rate-limit-tps", type=float,
                        help="emulate AWS's call-rate quota: this many calls per second per operation")
    parser.add_argument("--rate-limit-burst", type=float,
                        help="calls each operation may make at once (default: --rate-limit-tps)")
    return parser


def measure(args: argparse.Namespace, *, baseline: bool) -> dict[str, Any]:
    with environment(args) as (api, emu, kubeconfig):
        with operator_process(args, api, emu, kubeconfig, baseline) as process:
            created, ready = create_and_wait(args, api)
            cpu_at_ready, idle_from = cpu_seconds(process.pid), time.monotonic()
            initial_by_operation = emu.calls
            initial_calls = sum(initial_by_operation.values())  # the warm-up object's share is within noise
            throttled = emu.throttles
            steady = {} if baseline else steady_state(args, emu)
            rss = peak_rss_mib(process.pid)
            cpu = cpu_seconds(process.pid)
            idle_seconds = time.monotonic() - idle_from
        statuses = [o.get("status", {}) for o in api.objects(GROUP, VERSION, PLURAL, NAMESPACE)]
    latencies = sorted(ready[name] - created[name] for name in ready)
    elapsed = max(ready.values()) - min(created.values()) if ready else float("inf")
    floor = {} if baseline else quota_floor(args, initial_by_operation, throttled, elapsed)
    sizes = [len(json.dumps(s)) for s in statuses]
    return {
        "ready": len(ready),
        "seconds_to_all_ready": round(elapsed, 2),
        "throughput_per_s": round(len(ready) / elapsed, 1) if ready else 0.0,
        # When the last create was sent: the API server shares the cores with the operator, so under load the
        # creates themselves stretch, and no object can be Ready before it exists.
        "seconds_to_last_create": round(max(created.values()) - min(created.values()), 2) if created else 0.0,
        "p50_create_to_ready_s": round(_percentile(latencies, 50), 2),
        "p99_create_to_ready_s": round(_percentile(latencies, 99), 2),
        "aws_calls_per_pipeline_initial": round(initial_calls / args.pipelines, 2),
        "initial_calls_by_operation": {} if baseline else initial_by_operation,
        **floor,
        **steady,
        "peak_rss_mib": rss,
        "cpu_ms_per_pipeline": round(1000 * cpu / (args.pipelines + 1), 1),
        # The same split: the create storm up to all Ready, and what the operator costs afterwards while
        # nothing changes (its timers and resyncs), as a share of one core.
        "cpu_ms_per_pipeline_to_ready": round(1000 * cpu_at_ready / (args.pipelines + 1), 1),
        "steady_cpu_percent_of_a_core": round(100 * (cpu - cpu_at_ready) / idle_seconds, 1) if idle_seconds else 0.0,
        "status_bytes_mean": round(statistics.mean(sizes)) if sizes else 0,
        "status_bytes_max": max(sizes, default=0),
    }


class RemoteEmulator:
    """The AWS emulator in its own process, driven through its /_emulator/ control endpoints."""

    def __init__(self, options: list[str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "imagescan.emulator", "--port", "0", "--pipelines", "0", "--seed", "11",
             *(options or [])],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if not first.startswith("endpoint_url:"):
            raise SystemExit(f"the emulator did not start: {first!r}")
        self.endpoint_url = first.split()[1]
        self.region = "us-east-1"

    def control(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = json.dumps(payload or {}).encode() if method == "POST" else None
        request = urllib.request.Request(f"{self.endpoint_url}/_emulator/{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    @property
    def calls(self) -> dict[str, int]:
        return dict(self.control("GET", "calls"))

    @property
    def throttles(self) -> dict[str, int]:
        """Calls the emulated rate limit refused, per operation (since the last reset)."""
        return dict(self.control("GET", "throttles"))

    def reset_calls(self) -> None:
        self.control("POST", "calls/reset")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@contextlib.contextmanager
def environment(args: argparse.Namespace) -> Iterator[tuple[apiserver.ApiServer, RemoteEmulator, str]]:
    """A fresh API server (CRD, namespace) and emulator (N pipelines with findings, Inspector on, rate-limited
    with --rate-limit-tps)."""
    emu = RemoteEmulator(_rate_limit_options(args))
    try:
        with apiserver.ApiServer() as api, tempfile.TemporaryDirectory() as scratch:
            yield _prepare(args, api, emu, scratch)
    finally:
        emu.stop()


def _prepare(args: argparse.Namespace, api: apiserver.ApiServer, emu: RemoteEmulator,
             scratch: str) -> tuple[apiserver.ApiServer, RemoteEmulator, str]:
    emu.control("POST", "latency", {"ms": args.latency_ms})
    names = [WARMUP, *(f"bench-{index}" for index in range(args.pipelines))]
    emu.control("POST", "pipelines", {"names": names, "container": [i % 2 == 1 for i in range(len(names))],
                                      "findings": args.findings})
    api.apply(crdgen.crd(resources.IMAGE_PIPELINE))
    api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    kubeconfig = str(api.write_kubeconfig(pathlib.Path(scratch) / "kubeconfig"))
    return api, emu, kubeconfig


def _rate_limit_options(args: argparse.Namespace) -> list[str]:
    if args.rate_limit_tps is None:
        return []
    burst = args.rate_limit_burst if args.rate_limit_burst is not None else args.rate_limit_tps
    return ["--rate-limit-tps", str(args.rate_limit_tps), "--rate-limit-burst", str(burst)]


def quota_floor(args: argparse.Namespace, calls: dict[str, int], throttled: dict[str, int],
                elapsed: float) -> dict[str, Any]:
    """The fastest the rate limit lets the initial reconcile go, and how close the run came.

    Each operation can be called ``tps`` times a second, so the calls it needed (those answered, not the
    refused retries) take at least calls ÷ tps seconds; the operation needing most sets the floor. (Each
    bucket starts with ``burst`` calls in hand, so a small run can come in slightly under it.)
    """
    if args.rate_limit_tps is None:
        return {}
    needed = {operation: count - throttled.get(operation, 0) for operation, count in calls.items()}
    slowest = max(needed, key=needed.__getitem__, default=None)
    floor = needed[slowest] / args.rate_limit_tps if slowest is not None else 0.0
    return {
        "rate_limit_tps": args.rate_limit_tps,
        "rate_limit_burst": args.rate_limit_burst if args.rate_limit_burst is not None else args.rate_limit_tps,
        "floor_seconds": round(floor, 2),
        "floor_operation": slowest,
        "speed_vs_floor": round(floor / elapsed, 3) if elapsed > 0 else 0.0,
        "throttled_calls": sum(throttled.values()),
        "throttled_calls_by_operation": throttled,
    }


@contextlib.contextmanager
def operator_process(args: argparse.Namespace, api: apiserver.ApiServer, emu: RemoteEmulator,
                     kubeconfig: str, baseline: bool) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "KUBECONFIG": kubeconfig, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_REGION": emu.region}
    if baseline:
        command = [sys.executable, "-m", "kopf", "run", "--standalone", "-n", NAMESPACE, "--quiet",
                   str(HERE / "bare_operator.py")]
    else:
        command = [sys.executable, "-m", "imagescan.cli", "run", "-n", NAMESPACE, "--aws-endpoint-url",
                   emu.endpoint_url, "--workers", str(args.workers), "--tick", str(args.tick)]
    log = open(args.operator_log, "ab") if args.operator_log else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def create_and_wait(args: argparse.Namespace, api: apiserver.ApiServer) -> tuple[dict[str, float], dict[str, float]]:
    """Create the objects (8 clients at once, like a GitOps sync) and note when each turns Ready.

    A warm-up object goes first and must be Ready before the clock starts: the operator process needs a
    moment to import and start watching, and that start-up is not what is measured.
    """
    created: dict[str, float] = {}

    def create(name: str) -> None:
        created[name] = time.monotonic()
        api.apply({
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ImagePipeline",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"pipelineArn": f"{ARN_PREFIX}{name}", "resyncInterval": args.resync,
                     "findings": {"refreshInterval": "1h"}},
        })

    create(WARMUP)
    deadline = time.monotonic() + args.timeout
    while not _is_ready(api.get(GROUP, VERSION, PLURAL, NAMESPACE, WARMUP) or {}):
        if time.monotonic() > deadline:
            raise SystemExit("the operator never made the warm-up object Ready")
        time.sleep(0.05)
    del created[WARMUP]
    ready: dict[str, float] = {}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        pending = [pool.submit(create, f"bench-{index}") for index in range(args.pipelines)]
        deadline = time.monotonic() + args.timeout
        while len(ready) < args.pipelines and time.monotonic() < deadline:
            now = time.monotonic()
            for name in ready_names(api) - ready.keys() - {WARMUP}:
                ready[name] = now
            time.sleep(0.05)
        for future in pending:
            future.result()
    return created, ready


def ready_names(api: apiserver.ApiServer) -> set[str]:
    """Names of Ready objects, read in the server's own thread without copying every object."""
    def read(db: Any) -> set[str]:
        rtype = db.find_type(GROUP, VERSION, PLURAL)
        return {obj["metadata"]["name"] for obj in db.select(rtype, NAMESPACE) if _is_ready(obj)}
    return set(api.call(read))


def steady_state(args: argparse.Namespace, emu: RemoteEmulator) -> dict[str, Any]:
    """AWS calls per pipeline per resync, counted over a few resync periods once everything is Ready."""
    from imagescan.models import imagepipeline

    period = imagepipeline.parse_duration(args.resync)
    emu.reset_calls()
    time.sleep(period * args.resyncs)
    calls = emu.calls
    # Every resync reads the pipeline exactly once, so the reads count the resyncs that happened.
    resyncs = calls.get("GetImagePipeline", 0)
    return {
        "aws_calls_per_pipeline_per_resync": round(sum(calls.values()) / resyncs, 2) if resyncs else 0.0,
        "resyncs_observed_per_pipeline": round(resyncs / (args.pipelines + 1), 2),
        "steady_state_calls_by_operation": calls,
    }


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used so far (the operator's own work, whatever else runs)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _is_ready(obj: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in obj.get("status", {}).get("conditions", []))


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(pct / 100 * len(values)) - 1))
    return values[index]


def report(results: dict[str, Any]) -> str:
    lines = [f"{results['pipelines']} pipelines, {results['latency_ms']} ms AWS latency, "
             f"{results['workers']} workers"]
    for who in ("operator", "baseline"):
        if who in results:
            lines.append(f"  {who}:")
            lines += [f"    {key}: {value}" for key, value in results[who].items()]
    if "throughput_ratio" in results:
        lines.append(f"  throughput vs bare kopf: {results['throughput_ratio']}x")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
