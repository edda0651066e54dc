"""Leader-election memory benchmark: RSS of the Lease holder and of a standby with N ImagePipelines.

    python bench/elected.py --pipelines 1000 --latency-ms 50 --json elected.json

The shipped Deployment runs two replicas with ``--leader-election``: every replica runs the admission-only
kopf operator, and the Lease holder additionally runs the full reconciling one (docs/operations.md), so it
watches ImagePipelines and FindingsPolicies twice and keeps two sets of kopf indexes. bench/scale.py measured
one standalone operator; this measures the pair, as deployed, on a real control plane:

- a fresh etcd + kube-apiserver + kube-controller-manager (tests/support/controlplane.py, the cached
  binaries of hack/control-plane.sh), the CRDs from crds/, and the shipped RBAC identity: the operators log
  in with a token of the shipped ServiceAccount, bound to deploy/base/rbac.yaml and
  deploy/base/leader-election-rbac.yaml only;
- the AWS emulator in its own process (bench/scale.py's ``RemoteEmulator``, the same seeding: N+1 pipelines,
  alternately AMI and container, scanning off in AWS, 60 findings per image, 50 ms per call by default);
- two ``imagescan run --all-namespaces --http-port P --log-format json --leader-election`` processes (the
  Deployment's arguments) with their own ``POD_NAME``; the first is started alone and must hold the Lease
  before the second starts, so which is the holder is known. Both must answer ``/readyz`` before any object
  is created.

Then, as in bench/scale.py: a warm-up object must turn Ready, then N objects are created (8 clients at once)
and their Ready conditions followed through a watch. Once all are Ready, both processes' VmRSS is sampled every
second for ``--steady`` seconds (one resync period by default). Reported per process: RSS when idle (after the
warm-up), at all-Ready, steady (median of the window's samples), peak (VmHWM at the end), CPU seconds. Then,
unless ``--no-standalone``, the same on a fresh control plane with one operator without ``--leader-election``
(the configuration bench/scale.py measured, here on kube-apiserver), for comparison.

Correctness, checked from the operators' JSON logs and the emulator's counter: every pipeline reconciled
exactly once on creation (one ``created`` reconcile line naming it, "turned image scanning on"), by the
holder; no reconcile line at all from the standby; exactly one ``UpdateImagePipeline`` per pipeline.

Results go to stdout and, with --json, to a file. RSS is what this is for; times and CPU depend on the machine.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import json
import os
import pathlib
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # tests.support.controlplane, when run as `python bench/elected.py`
    sys.path.insert(0, str(ROOT))

import kubernetes.client  # noqa: E402
import kubernetes.watch  # noqa: E402

import scale  # noqa: E402  (bench/scale.py: the emulator and its seeding, RSS and CPU readers)
from imagescan import GROUP, VERSION  # noqa: E402
from tests.support import controlplane  # noqa: E402

PLURAL = scale.PLURAL
NAMESPACE = scale.NAMESPACE
WARMUP = scale.WARMUP
LEASE_NAMESPACE = controlplane.OPERATOR_NAMESPACE
LEASE_NAME = "imagescan-operator"  # --leader-election-id's default
HOLDER, STANDBY, STANDALONE = "holder", "standby", "standalone"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.summarize:
        print(summarize([json.loads(path.read_text()) for path in args.summarize]))
        return 0
    results: dict[str, Any] = {"pipelines": args.pipelines, "latency_ms": args.latency_ms, "workers": args.workers,
                               "steady_window_s": args.steady, "webhook": args.webhook,
                               "lease_timings_s": [args.lease_duration, args.renew_deadline, args.retry_period]}
    results["elected"] = measure(args, elected=True)
    if not args.no_standalone:
        results["standalone"] = measure(args, elected=False)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    runs = [results["elected"], *([results["standalone"]] if "standalone" in results else [])]
    return 0 if all(run["ready"] == args.pipelines and run["checks_passed"] for run in runs) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="emulated AWS latency per call")
    parser.add_argument("--workers", type=int, default=50, help="operator threads for AWS calls (scale.py's)")
    parser.add_argument("--findings", type=int, default=60, help="findings per image (all six severities)")
    parser.add_argument("--resync", default="1m", help="resyncInterval of the objects (the CRD allows 1m..168h)")
    parser.add_argument("--tick", type=float, default=10.0, help="the operators' --tick (their default: 10)")
    parser.add_argument("--steady", type=float, default=60.0,
                        help="seconds to sample RSS after all are Ready (default: one 1m resync period)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up waiting for Ready after this")
    parser.add_argument("--webhook", action="store_true",
                        help="also serve the admission webhook (deploy/webhook/; deploy/base serves none)")
    for flag, shipped in (("lease-duration", 15), ("renew-deadline", 10), ("retry-period", 2)):
        parser.add_argument(f"--{flag}", type=float, metavar="SECONDS",
                            help=f"the pair's --leader-election-{flag} (default: the operator's, {shipped})")
    parser.add_argument("--no-standalone", action="store_true", help="skip the standalone operator's run")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results here")
    parser.add_argument("--logs", type=pathlib.Path, help="keep the operators' logs in this folder")
    parser.add_argument("--summarize", type=pathlib.Path, nargs="+", metavar="JSON",
                        help="measure nothing: print the medians of these runs' --json results as a Markdown table")
    return parser


# --- One measurement ---------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, *, elected: bool) -> dict[str, Any]:
    """A fresh control plane and emulator; the pair (or one standalone operator); N objects to Ready."""
    with contextlib.ExitStack() as stack:
        scratch = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="imagescan-elected-")))
        logs = args.logs or scratch
        logs.mkdir(parents=True, exist_ok=True)
        plane = stack.enter_context(controlplane.ControlPlane(controlplane.binaries()))
        emu = scale.RemoteEmulator()
        stack.callback(emu.stop)
        kubeconfig = _prepare(args, plane, emu, scratch)
        roles = [HOLDER, STANDBY] if elected else [STANDALONE]
        operators: dict[str, Operator] = {}
        for role in roles:
            operator = Operator(role, args, emu, kubeconfig, logs / f"{'elected' if elected else 'standalone'}-"
                                f"{args.pipelines}-{role}.log", scratch, elected=elected)
            stack.callback(operator.stop)
            operators[role] = operator.start()
            if role == HOLDER:  # the first one alone, until it holds the Lease: then it is known which leads
                _wait(lambda: _lease_holder(plane) == f"bench-{HOLDER}", 60, "the first replica to hold the Lease",
                      operators.values())
        _wait(lambda: all(o.ready() for o in operators.values()), 120, "/readyz on every replica",
              operators.values())
        if elected:
            assert _lease_holder(plane) == f"bench-{HOLDER}"

        watcher = stack.enter_context(ReadyWatch(plane))
        created: dict[str, float] = {}
        creator = Creator(plane, args)
        creator.create(WARMUP, created)
        _wait(lambda: WARMUP in watcher.ready, args.timeout, "the warm-up object to turn Ready", operators.values())
        idle = {role: rss_mib(o.pid) for role, o in operators.items()}
        emu.reset_calls()

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            pending = [pool.submit(creator.create, f"bench-{i}", created) for i in range(args.pipelines)]
            deadline = time.monotonic() + args.timeout
            hwm = {role: 0.0 for role in operators}  # VmHWM as last read: a process that dies keeps its figure
            while len(watcher.ready.keys() - {WARMUP}) < args.pipelines and time.monotonic() < deadline:
                if any(not o.alive() for o in operators.values()):
                    break
                _track(hwm, operators)
                time.sleep(0.1)
            for future in pending:
                future.result()
        ready = {name: at for name, at in watcher.ready.items() if name != WARMUP}
        at_ready = {role: rss_mib(o.pid) for role, o in operators.items()}
        initial_calls = emu.calls

        samples: dict[str, list[float]] = {role: [] for role in operators}
        end = time.monotonic() + args.steady
        while time.monotonic() < end and all(o.alive() for o in operators.values()):
            for role, o in operators.items():
                samples[role].append(rss_mib(o.pid))
            _track(hwm, operators)
            time.sleep(1.0)
        _track(hwm, operators)
        alive = {role: o.alive() for role, o in operators.items()}
        processes = {
            role: {"rss_idle_mib": idle[role], "rss_at_all_ready_mib": at_ready[role],
                   "rss_steady_mib": round(statistics.median(samples[role]), 1) if samples[role] else 0.0,
                   "rss_steady_max_mib": max(samples[role], default=0.0),
                   "peak_rss_mib": hwm[role],
                   "cpu_seconds": round(scale.cpu_seconds(o.pid), 1) if alive[role] else 0.0,
                   "alive_at_end": alive[role], "exit_code": o.process.poll() if o.process else None,
                   "last_critical": o.last_critical()}
            for role, o in operators.items()}
        holder_after = _lease_holder(plane) if elected else ""
        for operator in operators.values():
            operator.stop()
        reconciles = {role: reconcile_lines(o.log) for role, o in operators.items()}
        refused = {role: refusals(o.log) for role, o in operators.items()}

    latencies = sorted(ready[name] - created[name] for name in ready)
    elapsed = max(ready.values()) - min(created.values()) if ready else float("inf")
    writer = HOLDER if elected else STANDALONE
    checks = _checks(args, reconciles, initial_calls, writer, elected, holder_after, alive)
    checks["no_rbac_refusals"] = not any(refused.values()) or refused
    return {
        "ready": len(ready),
        "seconds_to_all_ready": round(elapsed, 2),
        "p50_create_to_ready_s": round(scale._percentile(latencies, 50), 2),
        "p99_create_to_ready_s": round(scale._percentile(latencies, 99), 2),
        "aws_calls_initial_by_operation": initial_calls,
        "processes": processes,
        "checks": checks,
        "checks_passed": all(value is True for value in checks.values()),
    }


def _checks(args: argparse.Namespace, reconciles: dict[str, list[dict[str, Any]]], calls: dict[str, int],
            writer: str, elected: bool, holder_after: str, alive: dict[str, bool]) -> dict[str, Any]:
    """Every pipeline reconciled once on creation by the writer, nothing by the standby, one AWS write each."""
    names = {f"bench-{i}" for i in range(args.pipelines)}
    created = collections.Counter(line["name"] for line in reconciles[writer]
                                  if line.get("kind") == "ImagePipeline" and line.get("trigger") == "created")
    turned_on = {line["name"] for line in reconciles[writer]
                 if line.get("trigger") == "created" and "turned image scanning on" in line.get("action", "")}
    checks: dict[str, Any] = {
        "every_pipeline_created_once": all(created[name] == 1 for name in names),
        "every_pipeline_turned_on": names <= turned_on,
        "one_update_per_pipeline": calls.get("UpdateImagePipeline", 0) == args.pipelines,
        "processes_alive": all(alive.values()),
    }
    if elected:
        checks["standby_reconciled_nothing"] = not reconciles[STANDBY]
        checks["holder_kept_the_lease"] = holder_after == f"bench-{HOLDER}"
    return checks


def _prepare(args: argparse.Namespace, plane: controlplane.ControlPlane, emu: scale.RemoteEmulator,
             scratch: pathlib.Path) -> pathlib.Path:
    """CRDs, the namespace, the shipped ServiceAccount + RBAC (Lease Role included), the emulator's pipelines."""
    emu.control("POST", "latency", {"ms": args.latency_ms})
    names = [WARMUP, *(f"bench-{index}" for index in range(args.pipelines))]
    emu.control("POST", "pipelines", {"names": names, "container": [i % 2 == 1 for i in range(len(names))],
                                      "findings": args.findings})
    for crd in sorted((ROOT / "crds").glob("*.imagescan.io.yaml")):
        plane.apply_yaml(crd)
    plane.create_namespace(NAMESPACE)
    with controlplane.operator_identity(plane, scratch, namespace=NAMESPACE) as kubeconfig:
        plane.apply_yaml(ROOT / "deploy" / "base" / "leader-election-rbac.yaml")
        return kubeconfig


def _track(hwm: dict[str, float], operators: dict[str, Operator]) -> None:
    for role, operator in operators.items():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            if operator.alive():
                hwm[role] = max(hwm[role], scale.peak_rss_mib(operator.pid))


def _lease_holder(plane: controlplane.ControlPlane) -> str:
    status, body = plane.http("GET", f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/"
                                     f"{LEASE_NAME}")
    return str((body.get("spec") or {}).get("holderIdentity") or "") if status == 200 else ""


def _wait(check: Any, timeout: float, what: str, operators: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for operator in operators:
            if not operator.alive():
                raise SystemExit(f"{operator.role} exited before {what}:\n{operator.tail()}")
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"no {what} after {timeout:.0f} s")


# --- The operators -----------------------------------------------------------------------------------------


class Operator:
    """``imagescan run`` as the Deployment runs it: -A, --http-port, --log-format json, --leader-election."""

    def __init__(self, role: str, args: argparse.Namespace, emu: scale.RemoteEmulator, kubeconfig: pathlib.Path,
                 log: pathlib.Path, scratch: pathlib.Path, *, elected: bool) -> None:
        self.role = role
        self.log = log
        self.port = controlplane.free_port()
        self.command = [sys.executable, "-m", "imagescan.cli", "run", "--all-namespaces",
                        f"--http-port={self.port}", "--http-addr=127.0.0.1", "--log-format=json",
                        "--kubeconfig", str(kubeconfig), "--aws-endpoint-url", emu.endpoint_url,
                        "--workers", str(args.workers), "--tick", str(args.tick)]
        if elected:
            self.command.append("--leader-election")
            for flag in ("lease_duration", "renew_deadline", "retry_period"):
                if getattr(args, flag) is not None:
                    self.command += [f"--leader-election-{flag.replace('_', '-')}", str(getattr(args, flag))]
        if args.webhook:
            self.command += ["--webhook-port", str(controlplane.free_port()), "--webhook-addr", "127.0.0.1",
                             "--webhook-cert-dir", str(scratch / f"{role}-certs")]
        # The downward API's POD_NAME and POD_NAMESPACE; dummy credentials, as the emulator accepts any.
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "POD_NAME": f"bench-{role}",
                    "POD_NAMESPACE": LEASE_NAMESPACE, "AWS_ACCESS_KEY_ID": "bench",
                    "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": emu.region}
        self.env.pop("KUBECONFIG", None)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def last_critical(self) -> str:
        """Why it stopped on its own, if it did (e.g. "could not renew the Lease for 10 s")."""
        found = ""
        for text in self.log.read_text(errors="replace").splitlines():
            if '"CRITICAL"' in text:
                with contextlib.suppress(ValueError):
                    found = str(json.loads(text).get("message", ""))[:300]
        return found

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def rss_mib(pid: int) -> float:
    """VmRSS now (scale.peak_rss_mib reads the high-water mark); 0 once the process has gone."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def reconcile_lines(log: pathlib.Path) -> list[dict[str, Any]]:
    """The operator's one-line-per-reconcile records (they carry ``trigger``), from its JSON log."""
    lines = []
    for text in log.read_text(errors="replace").splitlines():
        if '"trigger"' not in text:
            continue
        with contextlib.suppress(ValueError):
            record = json.loads(text)
            if isinstance(record, dict) and "trigger" in record and "name" in record:
                lines.append(record)
    return lines


def refusals(log: pathlib.Path) -> list[str]:
    """Messages that say the ServiceAccount was refused (the shipped RBAC lacks a rule)."""
    found = []
    for text in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            message = str(json.loads(text).get("message", ""))
            # (the object names, bench-403 among them, are not status codes)
            if re.search(r"\b403\b|forbidden", re.sub(rf"{NAMESPACE}-\d+", "", message), re.IGNORECASE):
                found.append(message[:300])
    return found[:10]


# --- Objects -----------------------------------------------------------------------------------------------


class Creator:
    """Creates ImagePipelines as the admin, one POST each (thread-safe: a connection per request)."""

    def __init__(self, plane: controlplane.ControlPlane, args: argparse.Namespace) -> None:
        assert plane.pki is not None
        self.url = f"{plane.url}/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
        self.headers = {"Authorization": f"Bearer {plane.pki.admin_token}", "Content-Type": "application/json",
                        "Accept": "application/json"}
        self.context = ssl.create_default_context(cafile=str(plane.pki.ca))
        self.resync = args.resync

    def create(self, name: str, created: dict[str, float]) -> None:
        created[name] = time.monotonic()
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ImagePipeline",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"pipelineArn": f"{scale.ARN_PREFIX}{name}", "resyncInterval": self.resync,
                         "findings": {"refreshInterval": "1h"}}}
        status, answer = controlplane.raw_request(self.url, "POST", body, self.headers, self.context)
        if status != 201:
            raise SystemExit(f"creating {name}: {status} {answer}")


class ReadyWatch:
    """Follows the namespace's ImagePipelines through a watch and notes when each first turns Ready."""

    def __init__(self, plane: controlplane.ControlPlane) -> None:
        self.client = plane.client()
        self.ready: dict[str, float] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ready-watch", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> ReadyWatch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=15)
        self.client.close()  # type: ignore[no-untyped-call]

    def _run(self) -> None:
        api = kubernetes.client.CustomObjectsApi(self.client)
        while not self.stopping.is_set():
            watch = kubernetes.watch.Watch()
            try:
                for event in watch.stream(api.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, PLURAL,
                                          timeout_seconds=5):
                    obj = event["object"]
                    name = obj.get("metadata", {}).get("name")
                    if name and name not in self.ready and scale._is_ready(obj):
                        self.ready[name] = time.monotonic()
                    if self.stopping.is_set():
                        break
            except Exception as exc:  # a dropped watch is restarted; the last failure is kept
                self.error = exc
                time.sleep(0.5)
            finally:
                watch.stop()


# --- Output ------------------------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    lines = [f"{results['pipelines']} pipelines, {results['latency_ms']} ms AWS latency, "
             f"{results['workers']} workers, RSS steady window {results['steady_window_s']} s"]
    for run in ("elected", "standalone"):
        if run not in results:
            continue
        found = results[run]
        lines.append(f"  {run}: {found['ready']} Ready in {found['seconds_to_all_ready']} s "
                     f"(p50 {found['p50_create_to_ready_s']} s, p99 {found['p99_create_to_ready_s']} s)")
        for role, figures in found["processes"].items():
            lines.append(f"    {role}: " + ", ".join(f"{key} {value}" for key, value in figures.items()))
        failed = [key for key, value in found["checks"].items() if value is not True]
        lines.append(f"    checks: {'all passed' if not failed else 'FAILED ' + ', '.join(failed)}")
    return "\n".join(lines)


SUMMARY_ROWS = (
    ("peak RSS, VmHWM (MiB)", "peak_rss_mib"),
    ("steady RSS after all Ready, median of the window (MiB)", "rss_steady_mib"),
    ("RSS when all turned Ready (MiB)", "rss_at_all_ready_mib"),
    ("RSS idle, after the warm-up object (MiB)", "rss_idle_mib"),
    ("CPU seconds, start to end", "cpu_seconds"),
)


def summarize(runs: list[dict[str, Any]]) -> str:
    """Medians (and the range) of several runs' figures per process, as a Markdown table."""
    columns = [(run, role) for run, role in (("elected", HOLDER), ("elected", STANDBY), ("standalone", STANDALONE))
               if all(role in r.get(run, {}).get("processes", {}) for r in runs)]
    first = runs[0]
    lines = [f"Medians of {len(runs)} runs (min-max in brackets): {first['pipelines']} pipelines, "
             f"{first['latency_ms']} ms AWS latency, {first['workers']} workers.", "",
             "| | " + " | ".join(role for _, role in columns) + " |", "|---" * (len(columns) + 1) + "|"]

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):g} ({min(values):g}-{max(values):g})"

    for label, key in SUMMARY_ROWS:
        lines.append(f"| {label} | " + " | ".join(
            cell([r[run]["processes"][role][key] for r in runs]) for run, role in columns) + " |")
    for label, key in (("seconds from first create to all Ready", "seconds_to_all_ready"),):
        lines.append(f"| {label} | " + " | ".join(
            cell([r[run][key] for r in runs]) if role != STANDBY else "" for run, role in columns) + " |")
    passed = all(r[run]["checks_passed"] for r in runs for run in ("elected", "standalone") if run in r)
    lines += ["", f"Checks (every pipeline reconciled once, by the holder; none by the standby): "
              f"{'all passed' if passed else 'FAILED in some run'}."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
