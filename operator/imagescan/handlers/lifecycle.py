"""Operator start-up and clean-up: kopf settings under our own prefix, shared runtime in memo."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from imagescan import GROUP
from imagescan.handlers import runtime


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.startup(registry=registry, id="configure")(configure)
    kopf.on.cleanup(registry=registry, id="close")(close)


async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: runtime.Config = memo.config
    # kopf's own bookkeeping lives under our domain, not kopf.zalando.org.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration",
    )
    # kopf turns every INFO log of a handler into an Event by default; keep Events for what users act on.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = config.aws.workers
    # Watches that silently stall are restarted instead of hanging forever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    memo.runtime = runtime.Runtime(config)


async def close(memo: kopf.Memo, **_: Any) -> None:
    shared: runtime.Runtime | None = getattr(memo, "runtime", None)
    if shared is not None:
        shared.close()
