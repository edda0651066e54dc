"""Admission handlers: gate Pods, workloads and Karpenter EC2NodeClasses by FindingsPolicy.

Registered only when the operator is asked to serve the webhook (``imagescan run --webhook-port``): kopf
refuses to start with admission handlers and no server, and an operator that was not asked must not open a
port. The decision is taken from memory, with no AWS and no Kubernetes API call, so it stays far within the
webhook's 5-second timeout: kopf's indexes of ImagePipeline status (which images each latest build made) and
FindingsPolicies (``handlers.findingspolicy``), and the verdicts that policies' handler recorded in
``runtime.verdicts`` (the same its status and the PolicyCompliant condition show; nothing is judged here).
Deny refuses, Warn allows with admission warnings, Audit allows and leaves a Warning Event on the policy. A
pipeline no policy has judged yet is unknown and admitted, like one without findings.

kopf can post Events only from an object's own handlers, not from a webhook, so Audit hits are handed to a
small daemon that runs for each FindingsPolicy and posts them as Events on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from typing import Any

import kopf

from imagescan import metrics
from imagescan.admission import decision, server, workloads
from imagescan.handlers import findingspolicy, runtime
from imagescan.reconcile import policy

logger = logging.getLogger(__name__)

# (group, version, plural) of what the webhook reviews; deploy/webhook.yaml routes the same ones here.
RESOURCES = (
    ("", "v1", "pods"),
    ("apps", "v1", "deployments"),
    ("apps", "v1", "statefulsets"),
    ("apps", "v1", "daemonsets"),
    ("apps", "v1", "replicasets"),
    ("batch", "v1", "jobs"),
    ("batch", "v1", "cronjobs"),
    ("karpenter.k8s.aws", "v1", "ec2nodeclasses"),
)
AUDIT_REASON = "AdmissionAudited"
MAX_PENDING = 100  # distinct audit messages kept per policy until its daemon posts them


def register(registry: kopf.OperatorRegistry, config: runtime.Config, *, audit_events: bool = True) -> None:
    """Nothing at all unless the webhook is enabled. Without ``audit_events`` (the replicas under
    ``--leader-election``), Audit hits are only logged: the daemon that posts them would put a finalizer on
    every FindingsPolicy, and only the Lease holder writes to objects."""
    if config.webhook is None:
        return
    webhook = config.webhook
    auditor = Auditor()
    kopf_objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _QuietDenials) for f in kopf_objects.filters):
        kopf_objects.addFilter(_QuietDenials())

    async def serve(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        observed: metrics.Metrics | None = getattr(memo, "metrics", None)
        settings.admission.server = server.build(
            webhook, RESOURCES, observe=observed.webhook_seconds.observe if observed is not None else None)
        settings.admission.managed = None  # we ship our own configuration: timeout, failurePolicy, selectors

    kopf.on.startup(registry=registry, id="admission-server")(serve)
    for group, version, plural in RESOURCES:
        kopf.on.validate(group=group, version=version, plural=plural, registry=registry,
                         id=f"admission-{plural}", operations=["CREATE", "UPDATE"],
                         subresource="*")(auditor.review)  # pods/ephemeralcontainers adds containers too
    if not audit_events:
        return
    # Asked to stop first (backoff), the daemon ends at once; cancelling it is the fallback.
    kopf.daemon(*findingspolicy.RESOURCE, registry=registry, id="admission-audit",
                cancellation_backoff=2.0, cancellation_timeout=1.0)(auditor.daemon)


class _QuietDenials(logging.Filter):
    """kopf logs every refusal as a handler failing (ERROR); a denial is the webhook working, logged as INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not ("failed permanently: imagescan:" in record.getMessage()
                    and record.getMessage().startswith("Webhook 'admission-"))


class Auditor:
    """Judges admission requests, and queues Audit hits for each FindingsPolicy's daemon to post."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str | None, str], dict[str, int]] = {}
        self._signals: dict[tuple[str | None, str], asyncio.Event] = {}

    async def review(self, *, body: kopf.Body, dryrun: bool, warnings: list[str], **kwargs: Any) -> None:
        operation: str | None = kwargs.get("operation")
        old: kopf.Body | None = kwargs.get("old") if operation == "UPDATE" else None
        observed: metrics.Metrics = kwargs["memo"].runtime.metrics
        try:
            judged = self._judge(body, old, kwargs)
        except Exception as exc:  # a bug here must not refuse workloads: failurePolicy Ignore is the promise
            logger.exception("could not judge %s %s", body.get("kind"), body.meta.get("name"))
            warnings.append(f"imagescan could not judge the images: {exc}")
            observed.admission("None", "error")
            return
        observed.admission(*_decision(judged))
        subject = _subject(body, operation)
        for breach in judged.by_enforcement("Audit"):
            logger.info("admitted %s: %s", subject, breach.message)
            if not dryrun:  # a dry run changes nothing, so it leaves no Event either (sideEffects NoneOnDryRun)
                self.record(breach.policy_namespace, breach.policy, f"admitted {subject}: {breach.message}")
        warnings.extend(f"imagescan: {breach.message}" for breach in judged.by_enforcement("Warn"))
        denied = judged.by_enforcement("Deny")
        if denied:
            reasons = " | ".join(b.message for b in denied)
            logger.info("refused %s: %s", subject, reasons)
            raise kopf.AdmissionError(f"imagescan: {reasons}", code=403)

    def _judge(self, body: kopf.Body, old: kopf.Body | None, kwargs: Mapping[str, Any]) -> decision.Decision:
        pipelines: kopf.Index[str | None, policy.Pipeline] = kwargs[findingspolicy.INDEX]
        uses = workloads.new_uses(body, old)
        if not uses:
            return decision.Decision()
        read = _reader(kwargs)
        if body.get("kind") == workloads.NODE_CLASS_KIND:
            return decision.decide(uses, decision.ami_catalogue(pipelines), read, by_reference=False)
        namespace = body.meta.namespace
        catalogue = decision.container_catalogue(namespace, pipelines.get(namespace, []))
        return decision.decide(uses, catalogue, read)

    def record(self, namespace: str | None, name: str, message: str) -> None:
        """Queue an Event for the policy; only while its daemon runs, so nothing piles up for no one."""
        key = (namespace, name)
        signal = self._signals.get(key)
        if signal is None:
            return
        pending = self._pending.setdefault(key, {})
        if message in pending or len(pending) < MAX_PENDING:
            pending[message] = pending.get(message, 0) + 1
            signal.set()

    async def daemon(self, body: kopf.Body, namespace: str | None, name: str, stopped: kopf.DaemonStopped,
                     **_: Any) -> None:
        """Post queued Audit hits as Warning Events on this policy; identical ones as one, with a count."""
        key = (namespace, name)
        signal = self._signals[key] = asyncio.Event()
        try:
            while not stopped:
                await _first_of(signal.wait(), stopped.wait())
                signal.clear()
                for message, count in self._pending.pop(key, {}).items():
                    suffix = f" ({count} admissions)" if count > 1 else ""
                    kopf.warn(body, reason=AUDIT_REASON, message=message + suffix)
        finally:
            self._signals.pop(key, None)
            self._pending.pop(key, None)


def _decision(judged: decision.Decision) -> tuple[str, str]:
    """(enforcement, result) of a request for the metrics: the strongest enforcement it met decides."""
    for enforcement, result in (("Deny", "denied"), ("Warn", "warned"), ("Audit", "allowed")):
        if judged.by_enforcement(enforcement):
            return enforcement, result
    return "None", "allowed"


def _reader(kwargs: Mapping[str, Any]) -> decision.Read:
    """Recorded verdicts of the policies kopf's index holds now: a deleted or invalid policy is not asked."""
    policies: kopf.Index[str | None, tuple[str, Any]] = kwargs[findingspolicy.POLICY_INDEX]
    shared: runtime.Runtime = kwargs["memo"].runtime

    def read(namespace: str | None, pipeline: str) -> list[policy.Reading]:
        return shared.verdicts.read(namespace, pipeline, (name for name, _ in policies.get(namespace, [])))

    return read


async def _first_of(*awaitables: Awaitable[Any]) -> None:
    """Wake on whichever happens first (new audit hits, or kopf stopping the daemon)."""
    waiting = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in waiting:
            future.cancel()


def _subject(body: kopf.Body, operation: str | None) -> str:
    name = body.meta.get("name") or f"{body.meta.get('generateName') or ''}*"
    where = f"{body.meta.namespace}/{name}" if body.meta.namespace else name
    return f"{(operation or 'request').lower()} of {body.get('kind')} {where}"
