"""Audit hits as Warning Events on their FindingsPolicy, posted by the replica that admitted the request.

kopf posts Events only from an object's own handlers, so a webhook could reach them only through a daemon per
FindingsPolicy, and kopf puts its finalizer on every object a daemon runs for: the replicas that only answer
admission under ``--leader-election`` must write nothing to objects. An Event is no object's state, though:
like the API server's audit log, it records what one server observed, and each admission request is answered
by exactly one replica. So every replica, Lease holder or not, posts the Events of the requests it answered,
itself, through the Kubernetes API with the operator's identity: no Event is posted twice, none is lost when
leadership moves, and the same code runs standalone.

The webhook's answer never waits for the API: a hit is only counted in memory (at most ``CAPACITY`` distinct
messages at a time; more are dropped, and the drop is logged), and a background task posts what gathered
``WINDOW`` seconds after the first hit: one Event per policy and message, whose ``count`` is the number of
admissions, as the API server's own event aggregation shows repeats. A failed post is logged and dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Callable
from typing import Any, Protocol, cast

import kubernetes.client
from kubernetes.client import ApiException

from imagescan import GROUP, VERSION

logger = logging.getLogger(__name__)

REASON = "AdmissionAudited"
COMPONENT = "imagescan-operator"
KIND = "FindingsPolicy"
PLURAL = "findingspolicies"
WINDOW = 5.0  # seconds: a rollout's Pods, all admitted for the same reason, become one Event with a count
CAPACITY = 1000  # distinct (policy, message) pairs waiting for their Event
MAX_MESSAGE = 1024  # as kopf cuts its own Events' messages
TIMEOUT = 5.0  # seconds for each API call, and for the last posts when the operator stops


class Api(Protocol):
    """The two calls posting needs. Blocking: they run in a thread."""

    def uid(self, namespace: str, name: str) -> str | None:
        """The FindingsPolicy's uid (so that ``kubectl describe`` finds its Events); None if it is gone."""

    def create(self, namespace: str, event: dict[str, Any]) -> None: ...


@dataclasses.dataclass
class _Tally:
    count: int
    first: datetime.datetime
    last: datetime.datetime


_Key = tuple[str, str, str]  # the policy's namespace and name, the message


class Poster:
    """Counts Audit hits from the webhook (event loop) and posts them in the background, aggregated."""

    def __init__(self, api: Api, *, instance: str, window: float = WINDOW, capacity: int = CAPACITY,
                 clock: Callable[[], datetime.datetime] | None = None) -> None:
        self._api = api
        self._instance = instance
        self._window = window
        self._capacity = capacity
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._pending: dict[_Key, _Tally] = {}
        self._dropped = 0
        self._flushing: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()

    def record(self, namespace: str, policy: str, message: str) -> None:
        """Count one hit; post it within the window. Called in the webhook's handler: it never waits."""
        key, now = (namespace, policy, message[:MAX_MESSAGE]), self._clock()
        tally = self._pending.get(key)
        if tally is not None:
            tally.count, tally.last = tally.count + 1, now
        elif len(self._pending) < self._capacity:
            self._pending[key] = _Tally(1, now, now)
        else:
            self._dropped += 1
            return
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush_later())

    async def close(self) -> None:
        """Post what is pending at once (the operator stops), within ``TIMEOUT``."""
        if self._flushing is not None:
            self._flushing.cancel()
            self._flushing = None
        batch = self._take()
        if batch:
            try:
                await asyncio.wait_for(asyncio.to_thread(self._send, batch), timeout=TIMEOUT)
            except TimeoutError:
                logger.warning("gave up posting %d %s Event(s) at shutdown: no answer within %g s",
                               len(batch), REASON, TIMEOUT)

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._window)
        # One post at a time: an API server that hangs holds one thread, not one per window. Hits meanwhile
        # gather (up to the capacity) for the post after this one.
        async with self._sending:
            self._flushing = None  # hits from now on open the next window
            await asyncio.to_thread(self._send, self._take())

    def _take(self) -> dict[_Key, _Tally]:
        batch, self._pending = self._pending, {}
        if self._dropped:
            logger.warning("dropped %d Audit hit(s) without an Event: more than %d distinct messages waited",
                           self._dropped, self._capacity)
            self._dropped = 0
        return batch

    def _send(self, batch: dict[_Key, _Tally]) -> None:
        by_policy: dict[tuple[str, str], dict[str, _Tally]] = {}
        for (namespace, policy, message), tally in batch.items():
            by_policy.setdefault((namespace, policy), {})[message] = tally
        for (namespace, policy), hits in by_policy.items():
            try:
                self._send_policy(namespace, policy, hits)
            except Exception as exc:  # an Event is best effort: nothing may stop the next ones, or admission
                logger.warning("could not post %s Event(s) on %s %s/%s: %s", REASON, KIND, namespace, policy,
                               _brief(exc))

    def _send_policy(self, namespace: str, policy: str, hits: dict[str, _Tally]) -> None:
        uid = self._api.uid(namespace, policy)
        if uid is None:
            logger.info("no %s Event for %d admission(s): %s %s/%s is gone", REASON,
                        sum(t.count for t in hits.values()), KIND, namespace, policy)
            return
        for message, tally in hits.items():
            self._api.create(namespace, self._event(namespace, policy, uid, message, tally))

    def _event(self, namespace: str, policy: str, uid: str, message: str, tally: _Tally) -> dict[str, Any]:
        """A core/v1 Event as client-go's recorder writes one (what ``kubectl describe`` and ``get events``
        read), its count being the admissions of the window."""
        return {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{policy}.", "namespace": namespace},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "namespace": namespace,
                               "name": policy, "uid": uid},
            "type": "Warning", "reason": REASON, "message": message, "count": tally.count,
            "firstTimestamp": _time(tally.first), "lastTimestamp": _time(tally.last),
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT, "reportingInstance": self._instance,
        }


class KubernetesApi:
    """``Api`` through the kubernetes client, made on first use by ``connect`` (the operator's identity)."""

    def __init__(self, connect: Callable[[], kubernetes.client.ApiClient]) -> None:
        self._connect = connect
        self._client: kubernetes.client.ApiClient | None = None

    def uid(self, namespace: str, name: str) -> str | None:
        api = kubernetes.client.CustomObjectsApi(self._connected())
        try:
            found: Any = api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return str(found["metadata"]["uid"])

    def create(self, namespace: str, event: dict[str, Any]) -> None:
        # The client sends a dict as it is, with no CoreV1Event model in between: what _event wrote is posted.
        kubernetes.client.CoreV1Api(self._connected()).create_namespaced_event(
            namespace, cast(Any, event), _preload_content=False, _request_timeout=TIMEOUT)

    def _connected(self) -> kubernetes.client.ApiClient:
        if self._client is None:
            self._client = self._connect()
        return self._client


def _time(moment: datetime.datetime) -> str:
    """metav1.Time: RFC 3339 in whole seconds."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _brief(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"
