"""Where the images are in each kind the webhook reviews.

A Pod carries its spec directly; Deployments, StatefulSets, DaemonSets, ReplicaSets and Jobs carry it in
``spec.template``; a CronJob one level deeper, in ``spec.jobTemplate.spec.template``. Node images come from
Karpenter EC2NodeClasses, whose ``spec.amiSelectorTerms[].id`` pins AMIs by id. Objects are read
defensively: the webhook must answer whatever arrives, never crash on an odd shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")
TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
NODE_CLASS_KIND = "EC2NodeClass"


@dataclasses.dataclass(frozen=True)
class ImageUse:
    """An image (or AMI id) and where the object uses it, e.g. ``container app``."""

    image: str
    where: str


def pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod spec of a Pod or a workload's pod template; empty for anything else."""
    kind = obj.get("kind")
    if kind == "Pod":
        return _mapping(obj, "spec")
    if kind in TEMPLATE_KINDS:
        return _mapping(_mapping(_mapping(obj, "spec"), "template"), "spec")
    if kind == "CronJob":
        job = _mapping(_mapping(obj, "spec"), "jobTemplate")
        return _mapping(_mapping(_mapping(job, "spec"), "template"), "spec")
    return {}


def uses(obj: Mapping[str, Any]) -> list[ImageUse]:
    """Every image the object runs: container images, or AMI ids for an EC2NodeClass."""
    if obj.get("kind") == NODE_CLASS_KIND:
        return _ami_uses(obj)
    spec = pod_spec(obj)
    found = []
    for field in CONTAINER_FIELDS:
        containers = spec.get(field)
        for container in containers if isinstance(containers, list) else []:
            image = container.get("image") if isinstance(container, Mapping) else None
            if isinstance(image, str) and image:
                label = {"initContainers": "init container", "ephemeralContainers": "ephemeral container"}
                found.append(ImageUse(image, f"{label.get(field, 'container')} {container.get('name', '?')}"))
    return found


def new_uses(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[ImageUse]:
    """On an update, only what the update introduces: unrelated edits (labels, replicas) of a workload that
    already runs an image are not held back by it."""
    before = {use.image for use in uses(old)} if old is not None else set()
    return [use for use in uses(new) if use.image not in before]


def _ami_uses(obj: Mapping[str, Any]) -> list[ImageUse]:
    terms = _mapping(obj, "spec").get("amiSelectorTerms")
    found = []
    for index, term in enumerate(terms if isinstance(terms, list) else []):
        ami = term.get("id") if isinstance(term, Mapping) else None
        if isinstance(ami, str) and ami:
            found.append(ImageUse(ami, f"amiSelectorTerms[{index}]"))
    return found


def _mapping(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}
