"""Run the operator: build the handler registry from the config and hand it to kopf.

Used by ``imagescan run`` and by the tests, which run the real operator in a thread. Standalone (the default)
one kopf operator does everything. With ``--leader-election`` (``run_elected``) every replica runs a kopf
operator that only watches and answers admission, and the replica holding the Lease runs a second one, with
every reconciling handler, for as long as it holds it: the webhook never stops while leadership moves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import threading
from collections.abc import Awaitable
from typing import Any, NoReturn

import kopf

from imagescan import leader, logs, metrics, probes
from imagescan.handlers import (
    admission,
    findingspolicy,
    imagepipeline,
    inspectoractivation,
    intake,
    lifecycle,
    namespaces,
    runtime,
)


def registry(config: runtime.Config) -> kopf.OperatorRegistry:
    built = kopf.OperatorRegistry()
    lifecycle.register(built)
    imagepipeline.register(built)
    findingspolicy.register(built, tick=config.tick)
    inspectoractivation.register(built, tick=config.tick)
    namespaces.register(built)
    admission.register(built, config)
    intake.register(built)
    return built


def admission_registry(config: runtime.Config) -> kopf.OperatorRegistry:
    """What every replica runs under --leader-election: the webhook and the indexes and verdicts it reads (and
    the liveness probe). It writes nothing to any object, so it runs beside the Lease holder's operator."""
    built = kopf.OperatorRegistry()
    lifecycle.register(built)
    kopf.on.startup(registry=built, id="no-finalizer")(_no_finalizer)  # after lifecycle's "configure"
    if config.webhook is not None:
        namespaces.register(built)
        findingspolicy.register_judging(built, tick=config.tick)
        admission.register(built, config)
    return built


# A finalizer name that no object ever carries. kopf removes its finalizer from every object it watches that no
# handler of its own needs it for (no timer, daemon or delete handler: none here), so with the Lease holder's
# name each replica would strip the finalizer the holder keeps on every ImagePipeline and FindingsPolicy.
ADMISSION_FINALIZER = "operator.imagescan.io/admission-only-never-set"


async def _no_finalizer(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = ADMISSION_FINALIZER


async def run(
        config: runtime.Config,
        *,
        stop_flag: asyncio.Event | threading.Event | None = None,
        ready_flag: asyncio.Event | threading.Event | None = None,
        handlers: kopf.OperatorRegistry | None = None,
        observed: metrics.Metrics | None = None,
) -> None:
    """kopf with the operator's handlers, and its HTTP endpoint (``config.http``) for as long as kopf runs.
    ``observed``: the metrics to count into (default: a registry of this operator's own)."""
    observed = observed if observed is not None else metrics.Metrics()
    health = probes.Health(webhook=(config.webhook.addr, config.webhook.port) if config.webhook else None)
    built = handlers if handlers is not None else registry(config)
    probes.register(built, health)
    logs.quiet()
    async with probes.serving(config.http, health, observed.registry):
        health.running = True
        try:
            await kopf.operator(
                registry=built,
                memo=kopf.Memo(config=config, metrics=observed),
                standalone=True,
                clusterwide=config.clusterwide,
                namespaces=config.namespaces,
                stop_flag=stop_flag,
                ready_flag=ready_flag,
            )
        finally:
            health.running = False


class _NotMainThread(logging.Filter):
    """kopf warns that it cannot install signal handlers off the main thread; here that is the point."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "OS signals are ignored" not in record.getMessage()


class InThread:
    """The operator on its own event loop in a background thread (the sandbox and the tests)."""

    def __init__(self, config: runtime.Config, handlers: kopf.OperatorRegistry | None = None,
                 observed: metrics.Metrics | None = None) -> None:
        kopf_runner = logging.getLogger("kopf._core.reactor.running")
        if not any(isinstance(f, _NotMainThread) for f in kopf_runner.filters):
            kopf_runner.addFilter(_NotMainThread())
        self.config = config
        self._handlers = handlers
        self.metrics = observed if observed is not None else metrics.Metrics()
        self.exited = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="imagescan-operator", daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        try:
            asyncio.run(run(self.config, stop_flag=self._stop, ready_flag=self._ready, handlers=self._handlers,
                            observed=self.metrics))
        except BaseException as exc:  # surfaced to the caller through .error
            self.error = exc
            self._ready.set()
        finally:
            self.exited.set()

    def start(self, timeout: float = 30.0) -> InThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the operator did not become ready")
        if self.error is not None:
            raise RuntimeError("the operator failed to start") from self.error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def __enter__(self) -> InThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


logger = logging.getLogger(__name__)
EXIT_LEADERSHIP_LOST = 1


async def run_elected(config: runtime.Config, election: leader.Settings) -> None:
    """``imagescan run --leader-election``: answer admission always; reconcile only while holding the Lease.

    Two kopf operators, each on its own thread and event loop, because kopf cancels every task of its loop when
    it stops: the admission one runs from start to end, the reconciling one from acquiring the Lease to
    SIGTERM (then the Lease is released, so another replica takes over within a retry period) or to a
    renewal that misses the deadline (then the process exits at once: the others may take over as soon as
    the Lease expires, and nothing of this replica may write after that)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    observed = metrics.Metrics()  # one registry: the admission operator's /metrics shows the reconciler's too
    serving = InThread(config, handlers=admission_registry(config), observed=observed)
    await asyncio.to_thread(serving.start)
    elector = leader.Elector(election, leader.KubernetesLeases(election, timeout=election.retry_period))
    try:
        logger.info("standing by for the Lease %s/%s as %s", election.namespace, election.name, election.identity)
        if await _race(lease=elector.acquire(), stop=stopping.wait(), ended=_ended(serving)) == "lease":
            await _lead(config, elector, serving, stopping, observed)
    finally:
        await elector.release()  # also a Lease won by an attempt that a SIGTERM interrupted
        await asyncio.to_thread(serving.stop)
    _raise_if_failed(serving)
    if not stopping.is_set():
        raise RuntimeError("the admission operator stopped on its own")


async def _lead(config: runtime.Config, elector: leader.Elector, serving: InThread, stopping: asyncio.Event,
                observed: metrics.Metrics) -> None:
    # Its ports are the admission operator's: the webhook, the probes and metrics stay up while leadership moves.
    reconciling = InThread(dataclasses.replace(config, webhook=None, http=None), observed=observed)
    holding = asyncio.ensure_future(elector.hold())  # renewing already while kopf starts
    try:
        starting = asyncio.to_thread(reconciling.start)
        if await _race(started=starting, lost=asyncio.shield(holding), stop=stopping.wait()) == "started":
            await _race(lost=holding, stop=stopping.wait(), ended=_ended(serving), failed=_ended(reconciling))
    except leader.LeadershipLost as exc:
        _give_up(str(exc))
    finally:
        holding.cancel()
        await asyncio.to_thread(reconciling.stop)  # before the Lease is released: no write after that
    _raise_if_failed(reconciling)


def _give_up(reason: str) -> NoReturn:
    """Stop writing at once, whatever is in flight: like a SIGKILL, which the operator is made to survive."""
    logger.critical("%s: exiting now; this pod restarts as a standby", reason)
    logging.shutdown()
    os._exit(EXIT_LEADERSHIP_LOST)


async def _race(**contenders: Awaitable[Any]) -> str:
    """The name of whichever finishes first (its exception raised); the others are cancelled."""
    tasks = {asyncio.ensure_future(awaitable): name for name, awaitable in contenders.items()}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    first = done.pop()
    first.result()
    return tasks[first]


async def _ended(operator: InThread) -> None:
    while not operator.exited.is_set():
        await asyncio.sleep(0.5)


def _raise_if_failed(operator: InThread) -> None:
    if operator.error is not None:
        raise RuntimeError("the operator failed") from operator.error
