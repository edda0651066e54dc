"""Prometheus metrics of one operator: what it sees (findings, verdicts, Ready reasons) and what it does (AWS
calls, reconciles, admission decisions), served at ``/metrics`` (``imagescan.probes``).

Every operator has a registry of its own, so tests that run several operators in one process do not add into
one another's series. The places that already know a fact report it here, once: a handler when it settles an
object's status, the FindingsPolicy handler where it records verdicts, the admission handler when it
answers, botocore's event hooks (``instrument``) for every AWS call, paginators' pages included.

Per-object state is kept as the handlers last reported it and turned into gauges at scrape time, so an
object that goes takes its series with it and no count drifts through a missed decrement. There is no series
per vulnerability or per image: a pipeline has thousands of findings, and a label per CVE would grow the
series without bound. Counters and histograms are prometheus_client's, safe to update from the AWS worker
threads. This module does not import kopf: ``aws.clients`` is handed ``instrument`` without importing it.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import prometheus_client
from prometheus_client import core, registry

from imagescan.aws import retries
from imagescan.models import imagepipeline as ip
from imagescan.models import kstatus

SEVERITIES = ("critical", "high", "medium", "low", "informational", "untriaged")
ENFORCEMENTS = ("None", "Audit", "Warn", "Deny")
"""The strongest enforcement a request met; None: no policy had anything to say."""
RESULTS = ("allowed", "warned", "denied", "error")
# Reconciles take from milliseconds (nothing to do) to tens of seconds (throttled, many findings pages).
RECONCILE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# The webhook answers from memory; the API server gives it 5 s (timeoutSeconds) before failurePolicy applies.
WEBHOOK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Verdict(Protocol):
    """A policy's verdict on one pipeline (models.findingspolicy.PipelineVerdict)."""

    @property
    def compliant(self) -> bool: ...


@dataclasses.dataclass
class Tally:
    """One reconcile's AWS calls and time, for its log line."""

    calls: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


# The reconcile a worker thread's AWS calls belong to. Runtime.run_blocking runs work in a copy of the
# handler's context, so the hooks, called in that thread, find the handler's tally here.
_tally: contextvars.ContextVar[Tally | None] = contextvars.ContextVar("imagescan_tally", default=None)


class Metrics:
    """The operator's registry and the facts reported to it."""

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.state = State()
        self.registry.register(self.state)
        self.aws_calls = prometheus_client.Counter(
            "imagescan_aws_calls", "AWS API calls, each counted once after botocore's retries, by outcome: ok, "
            "throttled, 4xx or 5xx (the HTTP status class of the error), network (no answer)",
            ["service", "operation", "outcome"], registry=self.registry,
        )
        self.aws_throttles = prometheus_client.Counter(
            "imagescan_aws_throttles", "AWS answers that throttled a request, retried or not",
            ["service", "operation"], registry=self.registry,
        )
        self.reconcile_seconds = prometheus_client.Histogram(
            "imagescan_reconcile_duration_seconds", "How long one reconcile took, AWS calls included, by kind",
            ["kind"], buckets=RECONCILE_BUCKETS, registry=self.registry,
        )
        self.admission_decisions = prometheus_client.Counter(
            "imagescan_admission_decisions", "Admission requests judged, by the strongest enforcement of the "
            "policies they broke (None: no breach) and the answer: allowed, warned, denied, or error (could not "
            "judge: admitted with a warning)", ["enforcement", "result"], registry=self.registry,
        )
        self.events_received = prometheus_client.Counter(
            "imagescan_events", "Messages read from the events queue, by detail type (or why unusable: not-json, "
            "not-an-event, unknown-type) and result: matched (objects notified), unmatched (none of ours), "
            "unusable (deleted, logged once per kind)", ["type", "result"], registry=self.registry,
        )
        self.events_notified = prometheus_client.Counter(
            "imagescan_events_notified_objects", "Objects notified by events (a burst for one object is one "
            "refresh; see imagescan_reconcile_duration_seconds_count for the refreshes)", registry=self.registry,
        )
        self.events_queue_up = prometheus_client.Gauge(
            "imagescan_events_queue_up", "1 while the events queue answers (push intake healthy: periodic reads "
            "run on the safety-net interval), 0 while it fails (intake backs off; objects poll on their own "
            "intervals); absent without push intake", ["queue"], registry=self.registry,
        )
        self.events_lag_seconds = prometheus_client.Histogram(
            "imagescan_events_lag_seconds", "From an event's time (as AWS stamped it, whole seconds) to the intake "
            "reading it", buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 900), registry=self.registry,
        )
        self.webhook_seconds = prometheus_client.Histogram(
            "imagescan_webhook_duration_seconds", "Time the webhook took to answer one admission request, "
            "from the parsed request to the answer", buckets=WEBHOOK_BUCKETS, registry=self.registry,
        )

    # --- AWS ---------------------------------------------------------------------------------------------

    def instrument(self, client: Any) -> None:
        """Count a boto3 client's calls through its event system: ``after-call`` once per call (after
        botocore's retries, every paginator page too), ``after-call-error`` for a call that got no answer, and
        ``needs-retry`` for every throttled answer. The hooks return None, so they never decide a retry."""
        hooks = _AwsHooks(self, client.meta.service_model.service_name)
        client.meta.events.register("after-call", hooks.after_call)
        client.meta.events.register("after-call-error", hooks.after_call_error)
        client.meta.events.register("needs-retry", hooks.needs_retry)

    # --- reconciles --------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def reconcile(self, kind: str) -> Iterator[Tally]:
        """Time a reconcile and count the AWS calls made for it, in whichever worker thread."""
        tally = Tally()
        token = _tally.set(tally)
        try:
            yield tally
        finally:
            _tally.reset(token)
            self.reconcile_seconds.labels(kind=kind).observe(tally.seconds)

    # --- admission ---------------------------------------------------------------------------------------

    def admission(self, enforcement: str, result: str) -> None:
        self.admission_decisions.labels(enforcement=enforcement, result=result).inc()

    # --- per-object state, forwarded to the collector ---------------------------------------------------

    def settled(self, kind: str, uid: str, conditions: Sequence[kstatus.Condition]) -> None:
        self.state.settled(kind, uid, conditions)

    def findings(self, uid: str, namespace: str, name: str, status: ip.ImagePipelineStatus) -> None:
        self.state.findings(uid, namespace, name, status)

    def verdicts(self, namespace: str | None, policy: str, verdicts: Mapping[str, Verdict | None]) -> None:
        self.state.verdicts(namespace, policy, verdicts)

    def forget(self, uid: str) -> None:
        self.state.forget(uid)

    def forget_policy(self, namespace: str | None, policy: str) -> None:
        self.state.forget_policy(namespace, policy)


def outcome(status: int, code: str | None) -> str:
    """ok, throttled, or the class of the error's HTTP status: a bounded label, unlike error codes."""
    if code in retries.THROTTLING_CODES or status == 429:
        return "throttled"
    if status < 300:
        return "ok"
    return "4xx" if status < 500 else "5xx"


class _AwsHooks:
    """botocore event handlers for one client (botocore passes everything as keywords)."""

    def __init__(self, metrics: Metrics, service: str) -> None:
        self.metrics = metrics
        self.service = service

    def after_call(self, http_response: Any, parsed: Mapping[str, Any], model: Any, **_: Any) -> None:
        code = (parsed or {}).get("Error", {}).get("Code")
        self._count(model.name, outcome(http_response.status_code, code))

    def after_call_error(self, event_name: str, **_: Any) -> None:
        self._count(event_name.rsplit(".", 1)[-1], "network")  # after-call-error.<service>.<operation>

    def needs_retry(self, operation: Any, response: Any = None, **_: Any) -> None:
        parsed = response[1] if isinstance(response, tuple) and len(response) > 1 else None
        code = (parsed or {}).get("Error", {}).get("Code")
        if code in retries.THROTTLING_CODES:
            self.metrics.aws_throttles.labels(service=self.service, operation=operation.name).inc()

    def _count(self, operation: str, result: str) -> None:
        self.metrics.aws_calls.labels(service=self.service, operation=operation, outcome=result).inc()
        tally = _tally.get()
        if tally is not None:
            tally.calls += 1


class State(registry.Collector):
    """What the handlers last settled, per object, turned into gauges when scraped.

    Locked: under leader election two kopf operators, each on its own thread, report into one registry.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: dict[str, tuple[str, str, str]] = {}  # uid -> (kind, Ready status, reason)
        self._findings: dict[str, tuple[str, str, ip.SeverityCounts]] = {}  # uid -> (namespace, name, counts)
        self._verdicts: dict[tuple[str, str], tuple[int, list[str]]] = {}  # -> (compliant, violating names)

    def settled(self, kind: str, uid: str, conditions: Sequence[kstatus.Condition]) -> None:
        ready = kstatus.ready(conditions)
        with self._lock:
            self._ready[uid] = (kind, ready.status, ready.reason) if ready is not None else (kind, "Unknown", "")

    def findings(self, uid: str, namespace: str, name: str, status: ip.ImagePipelineStatus) -> None:
        latest = status.findings.latest_image if status.findings is not None else None
        with self._lock:
            if latest is None:
                self._findings.pop(uid, None)  # no build yet: no series, rather than zeros that read as "clean"
            else:
                self._findings[uid] = (namespace, name, latest.severity_counts)

    def verdicts(self, namespace: str | None, policy: str, verdicts: Mapping[str, Verdict | None]) -> None:
        violating = sorted(name for name, verdict in verdicts.items() if verdict is not None and not verdict.compliant)
        compliant = sum(1 for verdict in verdicts.values() if verdict is not None and verdict.compliant)
        with self._lock:
            self._verdicts[(namespace or "", policy)] = (compliant, violating)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._ready.pop(uid, None)
            self._findings.pop(uid, None)

    def forget_policy(self, namespace: str | None, policy: str) -> None:
        with self._lock:
            self._verdicts.pop((namespace or "", policy), None)

    def collect(self) -> Iterable[core.Metric]:
        with self._lock:
            ready = collections.Counter(self._ready.values())
            found = list(self._findings.values())
            verdicts = sorted(self._verdicts.items())
        findings = core.GaugeMetricFamily(
            "imagescan_findings", "Findings of each ImagePipeline's latest image, by severity",
            labels=["namespace", "name", "severity"],
        )
        for namespace, name, counts in found:
            for severity in SEVERITIES:
                findings.add_metric([namespace, name, severity], getattr(counts, severity))
        objects = core.GaugeMetricFamily(
            "imagescan_objects", "Objects by kind and their Ready condition's status and reason",
            labels=["kind", "ready", "reason"],
        )
        for (kind, status, reason), count in sorted(ready.items()):
            objects.add_metric([kind, status, reason], count)
        pipelines = core.GaugeMetricFamily(
            "imagescan_policy_pipelines", "ImagePipelines each FindingsPolicy judged, by verdict (pipelines "
            "without findings yet are in neither)", labels=["namespace", "policy", "verdict"],
        )
        violations = core.GaugeMetricFamily(
            "imagescan_policy_violating", "1 for each ImagePipeline that breaks a FindingsPolicy",
            labels=["namespace", "policy", "pipeline"],
        )
        for (namespace, policy), (compliant, violating) in verdicts:
            pipelines.add_metric([namespace, policy, "compliant"], compliant)
            pipelines.add_metric([namespace, policy, "violating"], len(violating))
            for name in violating:
                violations.add_metric([namespace, policy, name], 1)
        return [findings, objects, pipelines, violations]
