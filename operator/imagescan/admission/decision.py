"""Which FindingsPolicies the images an object runs break: which pipelines built them, and their verdicts.

An image is matched against the output URIs (container images) or AMI ids of each pipeline's latest build,
as its status reports them; anything not found there is unknown and allowed. A matched pipeline is not
judged here: the verdict each policy of the pipeline's namespace last recorded for it (``policy.Verdicts``,
the one its status and the pipeline's PolicyCompliant condition show) is read, in the same namespace the
policy judges it in: the workload's for container images; for AMIs, which an EC2NodeClass (cluster-scoped)
uses, the pipeline's own. A pipeline no policy has judged yet is unknown and allowed, as one without findings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

from imagescan.admission import images, workloads
from imagescan.models import findingspolicy as fp
from imagescan.models import imagepipeline as ip
from imagescan.reconcile import policy

Namespace = str | None
Read = Callable[[Namespace, str], Iterable[policy.Reading]]
"""What each policy of a namespace last judged of the named pipeline (``policy.Verdicts.read``)."""
MAX_WORST = 3  # warnings over 256 characters may be cut short by the API server


@dataclasses.dataclass(frozen=True)
class Built:
    """A pipeline whose latest build produced an image, and where the pipeline lives."""

    namespace: Namespace
    pipeline: policy.Pipeline


@dataclasses.dataclass(frozen=True)
class Breach:
    """One image, built by a pipeline that breaks one policy."""

    image: str
    where: tuple[str, ...]
    policy: str
    policy_namespace: Namespace
    enforcement: str
    pipeline: str
    verdict: fp.PipelineVerdict

    @property
    def message(self) -> str:
        rules = "; ".join(v.message for v in self.verdict.violations)
        counts = ", ".join(f"{n} {severity}" for severity, n in self.verdict.counts.items() if n)
        worst = ", ".join(self.verdict.worst[:MAX_WORST])
        short = self.image.rsplit("/", 1)[-1]  # the repository's last part and tag: warnings must stay short
        return (f"{', '.join(self.where)} ({short}): ImagePipeline {self.pipeline} breaks "
                f"FindingsPolicy {self.policy} ({self.enforcement}): {rules}"
                + (f"; counts: {counts}" if counts else "")
                + (f"; worst: {worst}" if worst else ""))


@dataclasses.dataclass(frozen=True)
class Decision:
    breaches: tuple[Breach, ...] = ()

    def by_enforcement(self, enforcement: str) -> list[Breach]:
        return [b for b in self.breaches if b.enforcement == enforcement]


def container_catalogue(namespace: Namespace, pipelines: Iterable[policy.Pipeline]) -> dict[str, list[Built]]:
    """Normalised output image keys of each pipeline's latest build, to the pipelines that built them."""
    found: dict[str, list[Built]] = {}
    for pipeline in pipelines:
        latest = _latest(pipeline)
        # Tagged URIs from Image Builder, and the same images by digest (resolved with ECR) for pinned pods.
        for uri in [*(latest.container_images or []), *(latest.container_image_digests or [])] if latest else []:
            ref = images.parse(uri)
            if ref is not None:
                found.setdefault(ref.key, []).append(Built(namespace, pipeline))
    return found


def ami_catalogue(pipelines: Mapping[Namespace, Iterable[policy.Pipeline]]) -> dict[str, list[Built]]:
    """AMI ids of each pipeline's latest build (every namespace: AMIs are used by cluster-scoped objects)."""
    found: dict[str, list[Built]] = {}
    for namespace, listed in pipelines.items():
        for pipeline in listed:
            latest = _latest(pipeline)
            for ami in (latest.amis or []) if latest else []:
                found.setdefault(ami, []).append(Built(namespace, pipeline))
    return found


def decide(
        uses: Iterable[workloads.ImageUse], catalogue: Mapping[str, list[Built]], read: Read,
        *, by_reference: bool = True,
) -> Decision:
    """Every (image, pipeline, policy) the object breaks, one per image however many containers share it.

    ``by_reference``: container image references are normalised before matching; AMI ids are compared as
    they are.
    """
    where: dict[str, list[str]] = {}
    for use in uses:
        where.setdefault(use.image, []).append(use.where)
    breaches = []
    for image, places in where.items():
        key = _key(image) if by_reference else image
        for built in catalogue.get(key, []) if key else []:
            breaches.extend(_breaches(image, tuple(places), built, read))
    return Decision(tuple(breaches))


def _breaches(image: str, where: tuple[str, ...], built: Built, read: Read) -> list[Breach]:
    """Only recorded violations count: not selected, not judged yet and no findings yet all allow."""
    return [
        Breach(image, where, r.policy, built.namespace, r.enforcement, built.pipeline.name, r.standing)
        for r in read(built.namespace, built.pipeline.name)
        if isinstance(r.standing, fp.PipelineVerdict) and not r.standing.compliant
    ]


def _key(image: str) -> str | None:
    ref = images.parse(image)
    return ref.key if ref is not None else None


def _latest(pipeline: policy.Pipeline) -> ip.LatestImage | None:
    return pipeline.status.findings.latest_image if pipeline.status.findings else None
