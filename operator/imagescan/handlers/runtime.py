"""What the handlers share for the operator's lifetime: built at start-up, kept in kopf's memo."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import zlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from imagescan import metrics as metrics_
from imagescan import probes
from imagescan.admission import server as admission_server
from imagescan.aws import clients as aws_clients
from imagescan.models import imagepipeline as m
from imagescan.models import kstatus
from imagescan.reconcile import activation, details, findings, policy, schedule, targets

T = TypeVar("T")
SAFETY_NET = 6 * 3600.0
"""With push intake healthy, objects are still read at least this often (unless their own intervals are
longer): what events might miss (a lost message, a change AWS sends no event for) is found within it."""


@dataclasses.dataclass(frozen=True)
class Events:
    """Push intake: EventBridge events through an SQS queue (deploy/aws/)."""

    queue_url: str
    safety_net: float = SAFETY_NET


@dataclasses.dataclass(frozen=True)
class Config:
    """The operator's settings, from the command line."""

    aws: aws_clients.Settings = dataclasses.field(default_factory=aws_clients.Settings)
    tick: float = 10.0
    """Seconds: how often FindingsPolicies are judged again and InspectorActivations ask the schedule whether
    they are due. An ImagePipeline's timer waits until the schedule says it is due (resync, findings refresh,
    a retry after a failure) or something wakes it (an event, its spec changing, a policy's new verdict); the
    tick bounds its wait only while the schedule cannot say (before its first reconcile, or while another
    handler reconciles it). The schedule alone decides when."""
    namespaces: tuple[str, ...] = ()
    clusterwide: bool = False
    http: probes.Settings | None = None
    """Serve /healthz, /readyz and /metrics this way; None: no port opened."""
    webhook: admission_server.Settings | None = None
    """Serve the admission webhook (FindingsPolicy gating) this way; None: no webhook, no port opened."""
    events: Events | None = None
    """Read AWS's events from this queue; None: poll only, on each object's own intervals."""


class Runtime:
    """AWS clients, the worker pool for blocking boto3 calls, shared caches and the schedule."""

    def __init__(self, config: Config, metrics: metrics_.Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else metrics_.Metrics()
        self.clients = aws_clients.Clients(config.aws, instrument=self.metrics.instrument)
        self.buckets = findings.AccountBuckets()
        self.details = details.DetailCache()
        self.schedule = schedule.Schedule()
        self.verdicts = policy.Verdicts()
        """Each policy's verdict per pipeline: written by the FindingsPolicy handler only, read by the
        PolicyCompliant condition and by admission."""
        self.inspector_waiters = activation.Waiters()
        """ImagePipelines waiting for Inspector: registered by their handler, woken by InspectorActivation's."""
        self.targets = targets.Targets()
        """What each ImagePipeline's last reconcile found, for the events intake to match events against."""
        self.push_healthy = False
        """Set by the events intake alone: its last read of the queue succeeded."""
        self._wakeups: dict[str, asyncio.Event] = {}
        self._pausing_until: dict[str, float] = {}
        """When each timer's current pause ends by itself (event loop time)."""
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.aws.workers, thread_name_prefix="imagescan-aws",
        )
        self._locks: dict[str, asyncio.Lock] = {}
        # The operator is the only writer of status, so the last status it wrote is never older than what
        # a handler's body shows (kopf may hand a timer a body from before the previous patch landed).
        # Kept as compact JSON, zlib-compressed: a 16 KB status takes 3.5 KB (parsed models would take 70 KB),
        # ≈ 12 MiB less at 1,000 pipelines for ≈ 0.1 ms per write.
        self._written: dict[str, bytes] = {}
        self._compliance: dict[str, tuple[str, str, str] | None] = {}

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """boto3 blocks: run it in the pool sized with botocore's connection pool, off the event loop. In a copy
        of the caller's context, so the AWS calls it makes are counted for the caller's reconcile (metrics)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.executor, context.run, fn, *args)

    def lock(self, uid: str) -> asyncio.Lock:
        """One reconcile at a time per object, whether an event or the timer started it."""
        return self._locks.setdefault(uid, asyncio.Lock())

    def safety_net(self) -> float | None:
        """The interval periodic reads stretch to while events carry the changes; None: poll as configured."""
        events = self.config.events
        return events.safety_net if events is not None and self.push_healthy else None

    def wake(self, uid: str) -> None:
        """Due now: the object's timer reconciles it at once, not at its next tick."""
        self.schedule.wake(uid)
        self._alarm(uid)

    def notify(self, uid: str, age: float = 0.0) -> bool:
        """AWS reported a change to the object ``age`` seconds ago (schedule.notify); its timer wakes to wait
        for the burst to end. False when there is nothing to do (already read, or not reconciled yet)."""
        accepted = self.schedule.notify(uid, age)
        if accepted:
            self._alarm(uid)
        return accepted

    async def pause(self, uid: str, stopped: Any, tick: float) -> None:
        """What the resync timer waits for: until the object is due, it is woken (``_alarm``: an event, a spec
        change, a policy's new verdict, Inspector turned on, push intake failing) or the timer is stopped. Not at
        all if it is due and nobody is reconciling it. An idle object's timer is not called again until then:
        idle objects cost no timer calls. ``tick`` bounds the wait only while the schedule cannot say (the
        object not reconciled yet, or another handler reconciling it)."""
        if stopped:
            return
        until = self.schedule.next_attempt(uid)
        lock = self._locks.get(uid)
        busy = lock is not None and lock.locked()
        timeout = tick if until is None or busy else max(0.0, until)
        alarm = self._wakeups.setdefault(uid, asyncio.Event())
        if timeout <= 0 or alarm.is_set():
            # An alarm raised while the timer was not waiting (it was reconciling, or kopf's rest between two
            # calls) is not lost: it ends this pause at once, and the caller reads the schedule again.
            alarm.clear()
            return
        waits = [asyncio.ensure_future(alarm.wait()), asyncio.ensure_future(stopped.wait(timeout))]
        self._pausing_until[uid] = asyncio.get_running_loop().time() + timeout
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._pausing_until.pop(uid, None)
            alarm.clear()
            for waiting in waits:
                waiting.cancel()

    def rescheduled(self, uid: str) -> None:
        """A handler other than the object's timer reconciled it (create, update, resume). If the object is now
        due before the timer's pause ends (a changed spec that failed backs off, events came meanwhile), the
        timer wakes to read the schedule again; otherwise it is left alone (no extra timer call per object in a
        create storm). A timer that is not pausing reads the schedule before it next waits."""
        until = self.schedule.next_attempt(uid)
        pausing_until = self._pausing_until.get(uid)
        if until is None or pausing_until is None:
            return
        if asyncio.get_running_loop().time() + until < pausing_until:
            self._alarm(uid)

    def poll_again(self) -> int:
        """Push intake failed: the objects on the safety net are due on their own intervals again
        (``schedule.poll_again``), and their timers wake to wait for that instead. Returns how many moved."""
        moved = self.schedule.poll_again()
        for uid in moved:
            self._alarm(uid)
        return len(moved)

    def compliance(self, namespace: str | None, name: str, policy_names: Iterable[str]) -> policy.Compliance:
        """An ImagePipeline's PolicyCompliant verdict: what the namespace's valid policies last recorded."""
        return policy.compliance(self.verdicts.read(namespace, name, policy_names))

    def recheck_compliance(self, namespace: str | None, pipelines: Iterable[policy.Pipeline],
                           policy_names: Iterable[str]) -> int:
        """After the namespace's policies were judged: wake the timer of each pipeline whose PolicyCompliant
        condition no longer says what they recorded (the timer writes it). Returns how many."""
        names = list(policy_names)
        woken = 0
        for pipeline in pipelines:
            written = self._compliance.get(pipeline.uid)
            if written is None:
                continue  # not reconciled yet (or an invalid spec): its next reconcile writes the condition
            verdict = self.compliance(namespace, pipeline.name, names)
            if written != (verdict.status, verdict.reason, verdict.message):
                self._alarm(pipeline.uid)
                woken += 1
        return woken

    def _alarm(self, uid: str) -> None:
        # Kept even when the timer has not paused yet: its first pause ends at once and reads the schedule.
        self._wakeups.setdefault(uid, asyncio.Event()).set()

    def forget(self, uid: str) -> None:
        alarm = self._wakeups.pop(uid, None)
        if alarm is not None:
            alarm.set()
        self._pausing_until.pop(uid, None)
        self.targets.forget(uid)
        self.inspector_waiters.release(uid)
        self._locks.pop(uid, None)
        self._written.pop(uid, None)
        self._compliance.pop(uid, None)
        self.schedule.forget(uid)
        self.metrics.forget(uid)

    def remember(self, uid: str, status: m.ImagePipelineStatus) -> None:
        self._written[uid] = zlib.compress(status.model_dump_json(by_alias=True, exclude_none=True).encode(), 1)
        self._compliance[uid] = next(
            ((c.status, c.reason, c.message) for c in status.conditions if c.type == kstatus.Type.POLICY_COMPLIANT),
            None,
        )

    def compliance_written(self, uid: str) -> tuple[str, str, str] | None:
        """(status, reason, message) of the PolicyCompliant condition last written; None if none was."""
        return self._compliance.get(uid)

    def last_written(self, uid: str) -> m.ImagePipelineStatus | None:
        data = self._written.get(uid)
        return m.ImagePipelineStatus.model_validate_json(zlib.decompress(data)) if data is not None else None

    def cached_details(self, pipeline: policy.Pipeline, spec: Any) -> tuple[details.Detail, ...] | None:
        """Every finding of the builds a policy judges, if the operator has read them (never fetches)."""
        key = policy.details_key(spec, pipeline)
        return self.details.get(key) if key is not None else None

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.clients.close()
