"""Admission handlers: gate Pods, workloads and Karpenter EC2NodeClasses by FindingsPolicy.

Registered only when the operator is asked to serve the webhook (``imagescan run --webhook-port``): kopf
refuses to start with admission handlers and no server, and an operator that was not asked must not open a
port. The decision is taken from memory, with no AWS and no Kubernetes API call, so it stays far within the
webhook's 5-second timeout: kopf's indexes of ImagePipeline status (which images each latest build made) and
FindingsPolicies (``handlers.findingspolicy``), and the verdicts that policies' handler recorded in
``runtime.verdicts`` (the same its status and the PolicyCompliant condition show; nothing is judged here).
Deny refuses, Warn allows with admission warnings, Audit allows and leaves a Warning Event on the policy. A
pipeline no policy has judged yet is unknown and admitted, like one without findings.

Audit Events are posted by the replica that answered the request, in the background, through the Kubernetes
API (``admission.events``): the same in every mode, and with nothing written to the policy itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from imagescan import leader, metrics
from imagescan.admission import decision, events, server, workloads
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


def register(registry: kopf.OperatorRegistry, config: runtime.Config) -> None:
    """Nothing at all unless the webhook is enabled. Nothing that writes to objects either: every replica
    under ``--leader-election`` registers the same."""
    if config.webhook is None:
        return
    webhook = config.webhook
    poster = events.Poster(events.KubernetesApi(leader.api_client), instance=leader.identity_from_environment())
    auditor = Auditor(poster)
    kopf_objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _QuietDenials) for f in kopf_objects.filters):
        kopf_objects.addFilter(_QuietDenials())

    async def serve(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        observed: metrics.Metrics | None = getattr(memo, "metrics", None)
        settings.admission.server = server.build(
            webhook, RESOURCES, observe=observed.webhook_seconds.observe if observed is not None else None)
        settings.admission.managed = None  # we ship our own configuration: timeout, failurePolicy, selectors

    async def post_pending(**_: Any) -> None:
        await poster.close()  # the hits of the last window, or they would leave with the process

    kopf.on.startup(registry=registry, id="admission-server")(serve)
    kopf.on.cleanup(registry=registry, id="admission-audit-events")(post_pending)
    for group, version, plural in RESOURCES:
        kopf.on.validate(group=group, version=version, plural=plural, registry=registry,
                         id=f"admission-{plural}", operations=["CREATE", "UPDATE"],
                         subresource="*")(auditor.review)  # pods/ephemeralcontainers adds containers too


class _QuietDenials(logging.Filter):
    """kopf logs every refusal as a handler failing (ERROR); a denial is the webhook working, logged as INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not ("failed permanently: imagescan:" in record.getMessage()
                    and record.getMessage().startswith("Webhook 'admission-"))


class Auditor:
    """Judges admission requests, and hands Audit hits to ``poster`` (None: they are only logged)."""

    def __init__(self, poster: events.Poster | None = None) -> None:
        self._poster = poster

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
            # A dry run changes nothing, so it leaves no Event either (sideEffects NoneOnDryRun).
            if self._poster is not None and not dryrun and breach.policy_namespace is not None:
                self._poster.record(breach.policy_namespace, breach.policy, f"admitted {subject}: {breach.message}")
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


def _subject(body: kopf.Body, operation: str | None) -> str:
    name = body.meta.get("name") or f"{body.meta.get('generateName') or ''}*"
    where = f"{body.meta.namespace}/{name}" if body.meta.namespace else name
    return f"{(operation or 'request').lower()} of {body.get('kind')} {where}"
