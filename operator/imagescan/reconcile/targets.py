"""Which ImagePipeline objects an AWS event concerns, from what their last reconcile found.

Every reconcile ``note``s what its status names: the pipeline ARN, the latest build's ARN (and so its image
family, where the next build will appear), its AMIs, ECR repositories and digests. ``match`` answers from that
alone, with no AWS call, so a burst of events costs nothing until the refreshes it causes. A build of a pipeline
whose images the operator has never seen cannot be matched by name; it concerns, at worst, the pipelines of
that account and region with no build known yet, which are all refreshed (a few, and only on such events).
Kept in memory like the schedule: after a restart every object is reconciled once, which fills it again.
"""

from __future__ import annotations

import collections
import threading

from imagescan.models import imagepipeline as m
from imagescan.reconcile import events

_ECR_HOST = ".dkr.ecr."


class Targets:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, frozenset[str]] = {}
        self._index: dict[str, set[str]] = collections.defaultdict(set)

    def note(self, uid: str, status: m.ImagePipelineStatus) -> None:
        """Remember what identifies the object, as its latest status describes it."""
        keys = _keys(status)
        with self._lock:
            before = self._keys.get(uid, frozenset())
            if keys == before:
                return
            for key in before - keys:
                self._drop(key, uid)
            for key in keys - before:
                self._index[key].add(uid)
            self._keys[uid] = keys

    def forget(self, uid: str) -> None:
        with self._lock:
            for key in self._keys.pop(uid, frozenset()):
                self._drop(key, uid)

    def match(self, change: events.Change) -> set[str]:
        """The uids of the objects the change may concern (empty: none the operator manages)."""
        scope = f"{change.account}/{change.region}"
        wanted = [f"pipeline={arn}" for arn in change.pipelines]
        wanted += [f"family={events.image_family(arn)}" for arn in change.images]
        wanted += [f"ami={ami}" for ami in change.amis]
        wanted += [f"digest={digest}" for digest in change.digests]
        wanted += [f"repository={scope}/{name}" for name in change.repositories]
        with self._lock:
            found = set().union(*(self._index.get(key, ()) for key in wanted))
            if not found and change.images:
                found = set(self._index.get(f"imageless={scope}", ()))
            return found

    def _drop(self, key: str, uid: str) -> None:
        holders = self._index.get(key)
        if holders is not None:
            holders.discard(uid)
            if not holders:
                del self._index[key]


def _keys(status: m.ImagePipelineStatus) -> frozenset[str]:
    pipeline = status.pipeline
    if pipeline is None:
        return frozenset()
    keys = {f"pipeline={pipeline.arn}"}
    image = status.findings.latest_image if status.findings else None
    if image is None:
        keys.add(f"imageless={pipeline.account_id}/{pipeline.region}")
        return frozenset(keys)
    keys.add(f"family={events.image_family(image.arn)}")
    keys.update(f"ami={ami}" for ami in image.amis or ())
    keys.update(f"digest={ref.rpartition('@')[2]}" for ref in image.container_image_digests or ())
    keys.update(_repository_key(uri) for uri in image.container_images or () if _ECR_HOST in uri)
    return frozenset(keys)


def _repository_key(uri: str) -> str:
    """``acct.dkr.ecr.region.amazonaws.com/repo/name:tag`` -> ``repository=acct/region/repo/name``."""
    host, _, path = uri.partition("/")
    account, _, rest = host.partition(_ECR_HOST)
    region = rest.split(".", 1)[0]
    head, _, last = path.split("@", 1)[0].rpartition("/")
    name = last.split(":", 1)[0]
    repository = f"{head}/{name}" if head else name
    return f"repository={account}/{region}/{repository}"
