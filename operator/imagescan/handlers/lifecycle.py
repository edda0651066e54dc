"""Operator start-up and clean-up: kopf settings under our own prefix, shared runtime in memo."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from imagescan import GROUP
from imagescan.handlers import intake, runtime

KOPF_PREFIX = f"operator.{GROUP}"


def register(registry: kopf.OperatorRegistry) -> None:
    # A fresh registry has none of kopf's default login handlers. kopf's own ones read $KUBECONFIG when
    # called (the kubernetes client fixes it at import time) and fall back to the in-cluster account.
    kopf.on.login(registry=registry, id="login-in-cluster")(kopf.login_with_service_account)
    kopf.on.login(registry=registry, id="login-kubeconfig")(kopf.login_with_kubeconfig)
    kopf.on.startup(registry=registry, id="configure")(configure)
    kopf.on.cleanup(registry=registry, id="close")(close)


async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: runtime.Config = memo.config
    # kopf's own bookkeeping lives under our domain, not kopf.zalando.org. Not directly under imagescan.io:
    # kopf ignores every annotation under its storage prefix when diffing, and users set imagescan.io/paused
    # and imagescan.io/reconcile-requested-at, which must trigger handlers.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration",
    )
    # kopf turns every INFO log of a handler into an Event by default; keep Events for what users act on.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = config.aws.workers
    # Watches that silently stall are restarted instead of hanging forever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    memo.runtime = runtime.Runtime(config, getattr(memo, "metrics", None))


async def close(memo: kopf.Memo, **_: Any) -> None:
    await intake.stop(memo)  # first: it polls with the clients closed below
    shared: runtime.Runtime | None = getattr(memo, "runtime", None)
    if shared is not None:
        shared.close()
