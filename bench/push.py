"""Push benchmark: how fresh status is once AWS pushes events, and what a quiet hour costs, push vs poll.

    python bench/push.py --pipelines 200 --samples 50 --window 20m --json push.json

Polling makes freshness a timer (findings.refreshInterval, 15 min by default) and charges AWS calls for every
pipeline on every resync whether anything changed or not; push intake (``imagescan run --events-queue-url``) is
meant to turn both around. This measures the two claims the way a user would see them, at the shipped settings
(tick 10 s; each object's spec leaves resyncInterval and findings.refreshInterval at their defaults, 10m and 15m;
the safety net at its 6h default):

- processes as in bench/scale.py (this one hosts the embedded API server; the AWS emulator and the operator run
  as processes of their own) plus moto's server (its SQS) in a fourth; the queue has a dead-letter queue as
  deploy/aws/ creates it, and the emulator sends the EventBridge events of builds and scans into it;
- push mode: a warm-up object turns Ready, then a new build of its pipeline must reach its status through the
  queue (the whole path works, and intake reports the queue healthy, before any measured object exists); then
  N objects (bench/scale.py's seeding: alternately AMI and container, scanning turned on by the operator),
  created one after another, all Ready, and a tick waited out (until f7661ea a new object's timer first ran a
  tick after its creation, so an event in its first tick waited for that; the wait stays so that runs compare);
- freshness: for K of them, one at a time, a new build with new criticals (``POST /_emulator/images``), timed
  from the request to status.findings.latestImage.arn naming it (read in the API server's thread every 50 ms);
  then, for the same K, changed findings of that build (``POST /_emulator/findings``), timed to the new critical
  count in status. The AWS calls each phase cost (emulator counter, after a settle period that lets any second
  refresh happen) are reported per event;
- steady state: with nothing changing, AWS calls over a window (emulator counter, reset first), as calls per
  pipeline per hour; the queue's own calls (ReceiveMessage, DeleteMessageBatch) from the operator's
  imagescan_aws_calls metric, per hour for the operator and per pipeline;
- poll mode: the same set-up and window with the operator run without --events-queue-url.

A window shorter than the resync interval (10m) sees no resync at all and says nothing; the window used is in
the results. Objects created together resync together, so where a window starts matters: at the defaults an
object is read at 10 and 15 minutes after its creation, then every 15 minutes twice (a resync, and a findings
refresh that also reads the pipeline: 25, 30, 40, 45 …). The default 20m window right after all-Ready sees the
first two; ``--lead-in 15m --window 30m`` counts two whole periods of the regime that follows. Push mode's periodic
reads run on the safety net (6h), which no window of minutes sees; ``--safety-net 20m`` (the operator's
--events-safety-net; shorter than the spec's own intervals it changes nothing) with ``--samples 0`` shows what one
safety-net period costs, in a window of a few periods.

Results go to stdout as a table and, with --json, to a file; ``--summarize a.json b.json c.json`` prints medians.
Times are wall-clock and the machine's load average is recorded with each phase.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import random
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import boto3

import scale
from imagescan import GROUP, VERSION, apiserver
from imagescan.models import imagepipeline
from imagescan.reconcile import schedule

PLURAL, NAMESPACE, WARMUP, ARN_PREFIX = scale.PLURAL, scale.NAMESPACE, scale.WARMUP, scale.ARN_PREFIX
REGION = "us-east-1"
POLL_S = 0.05
FRESH_TIMEOUT_S = 60.0
"""A sample not in status after this long counts as missed (and the run fails)."""
SETTLE_S = schedule.EVENT_MAX_WAIT + 10.0 + 2.0
"""After a freshness phase, before its calls are read: a burst's longest hold, a tick, and a margin, so that a
second refresh caused by the phase's events is counted in it."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.summarize:
        print(summarize([json.loads(path.read_text()) for path in args.summarize]))
        return 0
    results = run(args)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if complete(results, args) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", type=int, default=200)
    parser.add_argument("--samples", type=int, default=50, help="freshness samples of each kind (K pipelines)")
    parser.add_argument("--window", default="20m", help="steady-state window, push and poll each (e.g. 20m, 30s)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="emulated AWS latency per call")
    parser.add_argument("--workers", type=int, default=50, help="operator threads for AWS calls")
    parser.add_argument("--findings", type=int, default=60, help="findings per seeded image")
    parser.add_argument("--tick", type=float, default=10.0, help="the operator's --tick (shipped: 10)")
    parser.add_argument("--settle", type=float, default=SETTLE_S, help="seconds after each freshness phase "
                        "before its calls are read")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up waiting for Ready after this")
    parser.add_argument("--safety-net", help="the operator's --events-safety-net (default: not passed, so its "
                        "6h); shorter, to see in a window of minutes what the safety net costs per period")
    parser.add_argument("--lead-in", default="0s", help="wait this long (after the freshness samples, in push "
                        "mode) before the window starts, e.g. 15m to count from the periodic regime on")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--no-poll", action="store_true", help="skip the poll-mode run")
    modes.add_argument("--no-push", action="store_true", help="skip the push-mode run")
    parser.add_argument("--seed", type=int, default=11, help="picks the sampled pipelines")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results here")
    parser.add_argument("--operator-log", type=pathlib.Path, help="append the processes' output here")
    parser.add_argument("--rate-limit-tps", type=float, help="as bench/scale.py's (default: no limit)")
    parser.add_argument("--rate-limit-burst", type=float, help="as bench/scale.py's")
    parser.add_argument("--summarize", type=pathlib.Path, nargs="+", help="print the medians of these --json files")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    window = imagepipeline.parse_duration(args.window)
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "pipelines": args.pipelines, "samples": args.samples,
        "window_s": window, "lead_in_s": imagepipeline.parse_duration(args.lead_in),
        "latency_ms": args.latency_ms, "workers": args.workers, "tick": args.tick,
        "cpus": os.cpu_count(), "spec": "defaults (resyncInterval 10m, findings.refreshInterval 15m)",
        "safety_net": args.safety_net or "6h (default)",
    }
    if not args.no_push:
        results["push"] = measure(args, window, push=True)
    if not args.no_poll:
        results["poll"] = measure(args, window, push=False)
    if "push" in results and "poll" in results:
        push_rate = results["push"]["steady"]["aws_calls_per_pipeline_per_hour"]
        poll_rate = results["poll"]["steady"]["aws_calls_per_pipeline_per_hour"]
        results["push_vs_poll_calls"] = round(push_rate / poll_rate, 4) if poll_rate else None
    return results


def measure(args: argparse.Namespace, window: float, *, push: bool) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        api, emu, kubeconfig = stack.enter_context(scale.environment(args))
        queue_url = moto_url = None
        if push:
            moto_url = stack.enter_context(moto_server(args.operator_log))
            queue_url = create_queue(moto_url)
            emu.control("POST", "events", {"queueUrl": queue_url, "endpointUrl": moto_url, "region": REGION})
        operator = stack.enter_context(Operator.start(args, emu, kubeconfig, queue_url, moto_url))
        warm_up(args, api, emu, operator, push=push)
        seconds = create_and_wait(args, api)
        out: dict[str, Any] = {"ready": len(ready_pipelines(api)), "seconds_to_all_ready": round(seconds, 2)}
        if push and args.samples > 0:
            # Until f7661ea a new object's timer first ran a tick after its creation (kopf's initial_delay), and
            # an event in that tick waited for it; that is gone (tests/integration/test_push.py times an event
            # right after creation), and the wait stays so that results compare with the runs before.
            time.sleep(args.tick + 2.0)
            out["freshness"] = freshness(args, api, emu, operator)
        time.sleep(imagepipeline.parse_duration(args.lead_in))
        out["steady"] = steady_state(args, window, emu, operator)
        if push:
            out["events"] = emu.control("GET", "events")
        out["peak_rss_mib"] = scale.peak_rss_mib(operator.process.pid)
    return out


# --- processes ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def moto_server(log_path: pathlib.Path | None) -> Iterator[str]:
    """moto's server (for SQS) in a process of its own; yields its URL."""
    port = free_port()
    with _log(log_path) as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait(lambda: _answers(f"{url}/moto-api/"), 30, "moto's server never answered")
            yield url
        finally:
            _stop(process)


def create_queue(moto_url: str) -> str:
    """The intake queue as deploy/aws/ makes it: 20 s long polls, 60 s visibility, dead letters after 5."""
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_url,
                       aws_access_key_id="bench", aws_secret_access_key="bench")
    dead = sqs.create_queue(QueueName="imagescan-events-dlq")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return str(sqs.create_queue(QueueName="imagescan-events", Attributes={
        "ReceiveMessageWaitTimeSeconds": "20", "VisibilityTimeout": "60",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": "5"}),
    })["QueueUrl"])


class Operator:
    """``imagescan run`` in its own process, with /metrics on a loopback port."""

    def __init__(self, process: subprocess.Popen[bytes], metrics_url: str) -> None:
        self.process = process
        self.metrics_url = metrics_url

    @classmethod
    @contextlib.contextmanager
    def start(cls, args: argparse.Namespace, emu: scale.RemoteEmulator, kubeconfig: str, queue_url: str | None,
              moto_url: str | None) -> Iterator[Operator]:
        port = free_port()
        command = [sys.executable, "-m", "imagescan.cli", "run", "-n", NAMESPACE, "--aws-endpoint-url",
                   emu.endpoint_url, "--workers", str(args.workers), "--tick", str(args.tick),
                   "--http-port", str(port), "--http-addr", "127.0.0.1", "--region", REGION]
        if queue_url and moto_url:
            command += ["--events-queue-url", queue_url, "--sqs-endpoint-url", moto_url]
            command += ["--events-safety-net", args.safety_net] if args.safety_net else []
        env = {**os.environ, "KUBECONFIG": kubeconfig, "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": REGION}
        with _log(args.operator_log) as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
            try:
                yield cls(process, f"http://127.0.0.1:{port}/metrics")
            finally:
                _stop(process)

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Every sample of one metric family as (labels, value)."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            text = response.read().decode()
        found = []
        for line in text.splitlines():
            match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
            if match:
                found.append((dict(re.findall(r'(\w+)="([^"]*)"', match[1] or "")), float(match[2])))
        return found

    def sqs_calls(self) -> dict[str, float]:
        """The operator's calls to the events queue so far, by operation (every outcome)."""
        calls: dict[str, float] = {}
        for labels, value in self.samples("imagescan_aws_calls_total"):
            if labels.get("service") == "sqs":
                calls[labels["operation"]] = calls.get(labels["operation"], 0.0) + value
        return calls

    def queue_up(self) -> bool:
        with contextlib.suppress(OSError):
            return any(value == 1.0 for _, value in self.samples("imagescan_events_queue_up"))
        return False


@contextlib.contextmanager
def _log(path: pathlib.Path | None) -> Iterator[Any]:
    if path is None:
        yield subprocess.DEVNULL
        return
    with open(path, "ab") as log:
        yield log


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _answers(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
        return True
    return False


def _wait(condition: Callable[[], bool], timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(failure)
        time.sleep(POLL_S)


# --- objects --------------------------------------------------------------------------------------------------


def apply_pipeline(api: apiserver.ApiServer, name: str) -> None:
    """An ImagePipeline at the shipped intervals: the spec names its pipeline and nothing else."""
    api.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "ImagePipeline",
               "metadata": {"name": name, "namespace": NAMESPACE},
               "spec": {"pipelineArn": f"{ARN_PREFIX}{name}"}})


def warm_up(args: argparse.Namespace, api: apiserver.ApiServer, emu: scale.RemoteEmulator, operator: Operator,
            *, push: bool) -> None:
    """The warm-up object Ready; with push, also a build of its pipeline seen through the queue, and intake
    healthy, so that every measured object's first success is scheduled as push intends."""
    apply_pipeline(api, WARMUP)
    _wait(lambda: WARMUP in scale.ready_names(api), args.timeout, "the operator never made the warm-up object Ready")
    if not push:
        return
    image = emu.control("POST", "images", {"pipelineArn": f"{ARN_PREFIX}{WARMUP}", "findings": {"HIGH": 1}})
    _wait(lambda: latest_image(api, WARMUP).get("arn") == image["imageArn"], FRESH_TIMEOUT_S,
          "the warm-up build never reached status through the queue")
    _wait(operator.queue_up, FRESH_TIMEOUT_S, "intake never reported the queue healthy")


def create_and_wait(args: argparse.Namespace, api: apiserver.ApiServer) -> float:
    """Create the N objects one after another and wait until all are Ready; returns the seconds it took."""
    started = time.monotonic()
    for index in range(args.pipelines):
        apply_pipeline(api, f"bench-{index}")
    _wait(lambda: len(ready_pipelines(api)) == args.pipelines, args.timeout, "not every object turned Ready")
    return time.monotonic() - started


def ready_pipelines(api: apiserver.ApiServer) -> set[str]:
    return scale.ready_names(api) - {WARMUP}


def latest_image(api: apiserver.ApiServer, name: str) -> dict[str, Any]:
    obj = api.get(GROUP, VERSION, PLURAL, NAMESPACE, name) or {}
    return dict(obj.get("status", {}).get("findings", {}).get("latestImage") or {})


# --- freshness ------------------------------------------------------------------------------------------------


def freshness(args: argparse.Namespace, api: apiserver.ApiServer, emu: scale.RemoteEmulator,
              operator: Operator) -> dict[str, Any]:
    """New builds, then changed findings of those builds, for K pipelines one at a time."""
    picked = sorted(random.Random(args.seed).sample(range(args.pipelines), min(args.samples, args.pipelines)))
    names = [f"bench-{index}" for index in picked]
    images: dict[str, str] = {}

    def build(number: int, name: str) -> Callable[[], bool]:
        posted = emu.control("POST", "images", {"pipelineArn": f"{ARN_PREFIX}{name}",
                                                "findings": {"CRITICAL": 10 + number, "HIGH": 5, "LOW": 3}})
        images[name] = posted["imageArn"]
        return lambda: latest_image(api, name).get("arn") == posted["imageArn"]

    def rescan(number: int, name: str) -> Callable[[], bool]:
        critical = 100 + number
        emu.control("POST", "findings", {"imageArn": images[name],
                                         "findings": {"CRITICAL": critical, "MEDIUM": 4}})
        return lambda: _shows(latest_image(api, name), images[name], critical)

    return {
        "pipelines_sampled": len(names),
        # scale.py seeds the warm-up first and every other pipeline as a container one: bench-0, bench-2, …
        "container_sampled": sum(1 for index in picked if index % 2 == 0),
        "new_build": phase(args, names, build, emu, operator),
        "changed_findings": phase(args, names, rescan, emu, operator),
    }


def _shows(latest: dict[str, Any], image: str, critical: int) -> bool:
    return latest.get("arn") == image and latest.get("severityCounts", {}).get("critical") == critical


def phase(args: argparse.Namespace, names: list[str], change: Callable[[int, str], Callable[[], bool]],
          emu: scale.RemoteEmulator, operator: Operator) -> dict[str, Any]:
    """Time each change to status, one after another; then the AWS and queue calls the phase cost."""
    load = os.getloadavg()[0]
    emu.reset_calls()
    sqs_before = operator.sqs_calls()
    seconds: list[float] = []
    for number, name in enumerate(names):
        started = time.monotonic()
        seconds.append(_time_until(change(number, name), started))
    time.sleep(args.settle)
    calls = emu.calls
    sqs = _delta(operator.sqs_calls(), sqs_before)
    return {
        **_spread(seconds), "missed": sum(1 for s in seconds if s == float("inf")),
        "aws_calls_per_event": round(sum(calls.values()) / len(names), 2),
        "aws_calls_by_operation": calls, "sqs_calls": sqs,
        "load_average_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
    }


def _time_until(shown: Callable[[], bool], started: float) -> float:
    while not shown():
        if time.monotonic() - started > FRESH_TIMEOUT_S:
            return float("inf")
        time.sleep(POLL_S)
    return time.monotonic() - started


def _spread(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {"p50_s": round(scale._percentile(ordered, 50), 2), "p99_s": round(scale._percentile(ordered, 99), 2),
            "max_s": round(ordered[-1], 2), "min_s": round(ordered[0], 2)}


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    return {op: int(after[op] - before.get(op, 0.0)) for op in after if after[op] > before.get(op, 0.0)}


# --- steady state ---------------------------------------------------------------------------------------------


def steady_state(args: argparse.Namespace, window: float, emu: scale.RemoteEmulator,
                 operator: Operator) -> dict[str, Any]:
    """AWS calls while nothing changes, over ``window`` seconds, per pipeline per hour (and the queue's)."""
    objects = args.pipelines + 1  # the warm-up object is reconciled like the others
    load = os.getloadavg()[0]
    emu.reset_calls()
    sqs_before = operator.sqs_calls()
    cpu_before = scale.cpu_seconds(operator.process.pid)
    started = time.monotonic()
    time.sleep(window)
    calls = emu.calls
    hours = (time.monotonic() - started) / 3600
    sqs = _delta(operator.sqs_calls(), sqs_before)
    return {
        "window_s": round(hours * 3600, 1), "objects": objects,
        "aws_calls": sum(calls.values()), "aws_calls_by_operation": calls,
        "aws_calls_per_pipeline_per_hour": round(sum(calls.values()) / objects / hours, 3),
        "resyncs_per_pipeline": round(calls.get("GetImagePipeline", 0) / objects, 2),
        "sqs_calls": sqs, "sqs_calls_per_hour": round(sum(sqs.values()) / hours, 1),
        "sqs_calls_per_pipeline_per_hour": round(sum(sqs.values()) / objects / hours, 3),
        "operator_cpu_s": round(scale.cpu_seconds(operator.process.pid) - cpu_before, 2),
        "load_average_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
    }


# --- results --------------------------------------------------------------------------------------------------


def complete(results: dict[str, Any], args: argparse.Namespace) -> bool:
    """Every object Ready in each mode, and every freshness sample seen."""
    modes = [results[mode] for mode in ("push", "poll") if mode in results]
    fresh = results.get("push", {}).get("freshness")
    return (all(mode["ready"] == args.pipelines for mode in modes)
            and (fresh is None or fresh["new_build"]["missed"] == fresh["changed_findings"]["missed"] == 0))


def report(results: dict[str, Any]) -> str:
    push, poll = results.get("push"), results.get("poll")
    lines = [f"{results['pipelines']} pipelines, {results['latency_ms']} ms AWS latency, tick {results['tick']} s, "
             f"spec intervals at their defaults; {results['samples']} freshness samples of each kind; "
             f"steady-state window {results['window_s']:.0f} s after a lead-in of {results['lead_in_s']:.0f} s",
             "", "| figure | push | poll |", "|---|---|---|"]
    if push is not None and "freshness" in push:
        lines += _freshness_rows(push["freshness"])
    lines += _steady_rows(_get(push, "steady"), _get(poll, "steady"))
    lines.append(f"| seconds to all Ready | {_cell(push, 'seconds_to_all_ready')} | "
                 f"{_cell(poll, 'seconds_to_all_ready')} |")
    return "\n".join(lines)


def _freshness_rows(fresh: dict[str, Any]) -> list[str]:
    rows = []
    for kind in ("new_build", "changed_findings"):
        figures, label = fresh[kind], kind.replace("_", " ")
        rows.append(f"| freshness, {label}: p50 / p99 / max (s) | {figures['p50_s']} / {figures['p99_s']} / "
                    f"{figures['max_s']} | - |")
        rows.append(f"| AWS calls per {label} event | {figures['aws_calls_per_event']} | - |")
    return rows


def _steady_rows(push: dict[str, Any] | None, poll: dict[str, Any] | None) -> list[str]:
    rows = [("AWS calls per pipeline per hour, steady state", "aws_calls_per_pipeline_per_hour"),
            ("resyncs per pipeline in the window", "resyncs_per_pipeline"),
            ("SQS calls per hour (whole operator)", "sqs_calls_per_hour"),
            ("SQS calls per pipeline per hour", "sqs_calls_per_pipeline_per_hour"),
            ("operator CPU in the window (s)", "operator_cpu_s")]
    return [f"| {label} | {_cell(push, key)} | {_cell(poll, key)} |" for label, key in rows]


def _get(figures: dict[str, Any] | None, key: str) -> Any:
    return None if figures is None else figures.get(key)


def _cell(figures: dict[str, Any] | None, key: str) -> Any:
    value = _get(figures, key)
    return "-" if value is None else value


def summarize(runs: list[dict[str, Any]]) -> str:
    """The medians of several runs' headline figures, one line each."""
    paths = {
        "freshness new build p50 (s)": ("push", "freshness", "new_build", "p50_s"),
        "freshness new build p99 (s)": ("push", "freshness", "new_build", "p99_s"),
        "freshness new build max (s)": ("push", "freshness", "new_build", "max_s"),
        "freshness changed findings p50 (s)": ("push", "freshness", "changed_findings", "p50_s"),
        "freshness changed findings p99 (s)": ("push", "freshness", "changed_findings", "p99_s"),
        "AWS calls per new-build event": ("push", "freshness", "new_build", "aws_calls_per_event"),
        "AWS calls per changed-findings event": ("push", "freshness", "changed_findings", "aws_calls_per_event"),
        "push: AWS calls per pipeline per hour": ("push", "steady", "aws_calls_per_pipeline_per_hour"),
        "push: SQS calls per pipeline per hour": ("push", "steady", "sqs_calls_per_pipeline_per_hour"),
        "poll: AWS calls per pipeline per hour": ("poll", "steady", "aws_calls_per_pipeline_per_hour"),
    }
    lines = [f"medians of {len(runs)} runs"]
    for label, path in paths.items():
        values = [_dig(run, path) for run in runs]
        found = [v for v in values if v is not None]
        lines.append(f"  {label}: {statistics.median(found) if found else '-'}  ({values})")
    return "\n".join(lines)


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


if __name__ == "__main__":
    sys.exit(main())
