"""Run the operator: build the handler registry from the config and hand it to kopf.

Used by ``imagescan run`` and by the tests, which run the real operator in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import kopf

from imagescan.handlers import (
    admission,
    findingspolicy,
    imagepipeline,
    inspectoractivation,
    lifecycle,
    namespaces,
    runtime,
)


def registry(config: runtime.Config) -> kopf.OperatorRegistry:
    built = kopf.OperatorRegistry()
    lifecycle.register(built)
    imagepipeline.register(built, tick=config.tick)
    findingspolicy.register(built, tick=config.tick)
    inspectoractivation.register(built, tick=config.tick)
    namespaces.register(built)
    admission.register(built, config)
    return built


async def run(
        config: runtime.Config,
        *,
        stop_flag: asyncio.Event | threading.Event | None = None,
        ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    await kopf.operator(
        registry=registry(config),
        memo=kopf.Memo(config=config),
        standalone=True,
        clusterwide=config.clusterwide,
        namespaces=config.namespaces,
        liveness_endpoint=config.liveness_endpoint,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


class _NotMainThread(logging.Filter):
    """kopf warns that it cannot install signal handlers off the main thread; here that is the point."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "OS signals are ignored" not in record.getMessage()


class InThread:
    """The operator on its own event loop in a background thread (the sandbox and the tests)."""

    def __init__(self, config: runtime.Config) -> None:
        kopf_runner = logging.getLogger("kopf._core.reactor.running")
        if not any(isinstance(f, _NotMainThread) for f in kopf_runner.filters):
            kopf_runner.addFilter(_NotMainThread())
        self.config = config
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="imagescan-operator", daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        try:
            asyncio.run(run(self.config, stop_flag=self._stop, ready_flag=self._ready))
        except BaseException as exc:  # surfaced to the caller through .error
            self.error = exc
            self._ready.set()

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
