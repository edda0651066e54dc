"""What the emulator saw, for reliability tests: every call in order, and what every update changed.

Counting calls per operation (``Emulator.calls``) says how much a client asked; it cannot say *when* one
pipeline was retried, nor whether a write carried stale content. These recorders can:

* ``CallLog`` keeps one ``Call`` per request (monotonic time, operation, the pipeline or image ARN it named,
  the error code it got), so back-off spacing per pipeline and calls per second can be read off afterwards.
* ``UpdateLog`` keeps one ``Update`` per UpdateImagePipeline that reached the world, with the non-scanning
  fields the write changed. UpdateImagePipeline replaces the whole pipeline, so a writer that sends back
  what it read earlier silently reverts whatever changed in between; such a write shows up here as an
  ``Update`` whose ``changed`` is not empty (the pipeline's then-current content was not what it carried).
* ``Hooks`` runs one-shot actions right before the next UpdateImagePipeline for an ARN is handled: a
  deterministic "someone else wrote between your read and your write".

All of it is thread-safe: the HTTP server handles requests on many threads.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

# What an update may change besides scanning: AWS stamps the time and recomputes the next scheduled run.
NOT_CONTENT = frozenset({"imageScanningConfiguration", "dateUpdated", "dateNextRun"})
_ARN_PARAMS = ("imagePipelineArn", "imageBuildVersionArn")


@dataclasses.dataclass(frozen=True)
class Call:
    """One request as the emulator answered it."""

    at: float
    """``time.monotonic()`` when it arrived."""
    operation: str
    arn: str | None
    """The pipeline (or image) the request named, when it named one."""
    error: str | None
    """The error code it was answered with; None for a success."""


class CallLog:
    """Every request, in arrival order; bounded so a long benchmark cannot grow it without limit."""

    def __init__(self, maxlen: int = 500_000) -> None:
        self._lock = threading.Lock()
        self._calls: collections.deque[Call] = collections.deque(maxlen=maxlen)

    def record(self, at: float, operation: str, arn: str | None, error: str | None) -> None:
        with self._lock:
            self._calls.append(Call(at, operation, arn, error))

    def entries(self, since: float | None = None) -> list[Call]:
        """The calls so far (those that arrived at or after ``since``, a ``time.monotonic()`` value)."""
        with self._lock:
            calls = list(self._calls)
        return calls if since is None else [call for call in calls if call.at >= since]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()


def named_arn(params: Mapping[str, Any]) -> str | None:
    """The pipeline or image ARN a decoded request names, directly or as its first filter value."""
    for key in _ARN_PARAMS:
        if isinstance(params.get(key), str):
            return str(params[key])
    raw = params.get("filter")
    if isinstance(raw, dict) and raw.get("name") in _ARN_PARAMS and raw.get("values"):
        return str(raw["values"][0])
    return None


@dataclasses.dataclass(frozen=True)
class Update:
    """One UpdateImagePipeline the world applied."""

    at: float
    arn: str
    client_token: str
    changed: tuple[str, ...]
    """Fields other than scanning (and AWS's own stamps) whose value the write changed."""
    scanning_before: dict[str, Any]
    scanning_after: dict[str, Any]

    @property
    def stale(self) -> bool:
        """Whether the write carried anything but the pipeline's then-current content outside scanning."""
        return bool(self.changed)


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, ...]:
    """Top-level fields, scanning and AWS's stamps aside, that differ between two versions of a pipeline."""
    keys = (set(before) | set(after)) - NOT_CONTENT
    return tuple(sorted(key for key in keys if before.get(key) != after.get(key)))


class UpdateLog:
    """Every applied UpdateImagePipeline (idempotent replays are not applied, so not recorded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._updates: list[Update] = []

    def record(self, arn: str, client_token: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> Update:
        update = Update(
            at=time.monotonic(), arn=arn, client_token=client_token, changed=changed_fields(before, after),
            scanning_before=dict(before.get("imageScanningConfiguration") or {}),
            scanning_after=dict(after.get("imageScanningConfiguration") or {}),
        )
        with self._lock:
            self._updates.append(update)
        return update

    def entries(self) -> list[Update]:
        with self._lock:
            return list(self._updates)

    def stale(self, token_filter: Callable[[str], bool] | None = None) -> list[Update]:
        """Updates that changed more than scanning; ``token_filter`` picks whose writes to look at."""
        return [u for u in self.entries() if u.stale and (token_filter is None or token_filter(u.client_token))]

    def clear(self) -> None:
        with self._lock:
            self._updates.clear()


class Hooks:
    """One-shot actions run before the next UpdateImagePipeline for an ARN is handled (outside any lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._before_update: dict[str, list[Callable[[], object]]] = {}

    def before_next_update(self, arn: str, action: Callable[[], object]) -> None:
        with self._lock:
            self._before_update.setdefault(arn, []).append(action)

    def take_before_update(self, arn: str | None) -> list[Callable[[], object]]:
        """The actions due for this ARN, removed so each runs once."""
        if arn is None:
            return []
        with self._lock:
            return self._before_update.pop(arn, [])

    def pending(self) -> int:
        with self._lock:
            return sum(len(actions) for actions in self._before_update.values())

    def clear(self) -> None:
        with self._lock:
            self._before_update.clear()
