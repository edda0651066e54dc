"""The baseline for bench/scale.py: a bare kopf operator that only marks each ImagePipeline Ready.

Same API server, same objects, same kopf version and login as the real operator; no AWS, no timer, no
finalizer. Run with `kopf run --standalone -n NAMESPACE bench/bare_operator.py`.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import kopf


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.WARNING
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="operator.imagescan.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="operator.imagescan.io", key="last-handled-configuration",
    )


@kopf.on.create("imagescan.io", "v1alpha1", "imagepipelines")
async def mark_ready(patch: kopf.Patch, meta: kopf.Meta, **_: Any) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch.status["observedGeneration"] = meta.get("generation")
    patch.status["conditions"] = [{
        "type": "Ready", "status": "True", "reason": "Baseline", "message": "", "lastTransitionTime": now,
    }]
