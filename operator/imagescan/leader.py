"""Leader election on a coordination.k8s.io Lease, as client-go does it, so that one replica alone reconciles.

kopf writes its progress and diff-base into annotations of the objects it handles and removes finalizers when
its handlers are done: two operators handling the same objects would each take the other's writes for "already
handled". kopf's own peering avoids that by pausing every watch of the replicas that must not act, indexes
included, so their admission webhook would judge from data frozen at the pause. Hence a Lease: its holder runs
the reconciling handlers, the others keep watching for the webhook (``runner.run_elected``).

The rules are client-go's: the holder renews every retry period; another replica takes the Lease over only
when it has seen the same record unchanged for the lease's duration, measured on its own clock (so clocks need
not agree); every write carries the read's resourceVersion, so of two replicas racing for it one gets a
conflict. A holder that has not renewed for the renew deadline (shorter than the lease) gives up, before
anyone else may take over. Releasing empties the holder, so the next replica takes over at its next retry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import kubernetes.client
import kubernetes.config
from kubernetes.client import ApiException
from urllib3 import exceptions as urllib3_exceptions

logger = logging.getLogger(__name__)
# What a Lease read or write raises when the API server refuses or cannot be reached: an attempt that failed,
# never a crash. urllib3 gives up with MaxRetryError (not an OSError) when the server drops connections under
# load, as it does in a create storm on a small control plane (docs/benchmarks.md, "Leader election").
UNREACHABLE = (ApiException, OSError, urllib3_exceptions.HTTPError)

DEFAULT_NAMESPACE = "imagescan-system"
DEFAULT_NAME = "imagescan-operator"
JITTER = 1.2  # client-go's: retries spread over [retry, 1.2 * retry], so candidates do not move in lockstep


@dataclasses.dataclass(frozen=True)
class Settings:
    """Which Lease, who we are, and client-go's default timings (seconds)."""

    identity: str
    namespace: str = DEFAULT_NAMESPACE
    name: str = DEFAULT_NAME
    lease_duration: float = 15.0
    """How long others wait, after the record last changed, before they take the Lease over."""
    renew_deadline: float = 10.0
    """How long the holder goes on without a successful renewal before it stops reconciling."""
    retry_period: float = 2.0
    """How often the holder renews, and candidates try."""

    def __post_init__(self) -> None:
        # The holder must give up before anyone may take over, with room for a retry in between.
        if not self.lease_duration > self.renew_deadline > JITTER * self.retry_period > 0:
            raise ValueError("leader election needs lease duration > renew deadline > 1.2 x retry period > 0")


def identity_from_environment() -> str:
    """The pod's name (downward API), else the host's with a random suffix: unique among the candidates."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


class Conflict(Exception):
    """Someone else wrote the Lease since we read it (or created it first)."""


class Leases(Protocol):
    """The three Lease calls election needs; records are the Lease objects as JSON."""

    def get(self) -> dict[str, Any] | None: ...

    def create(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def replace(self, body: dict[str, Any]) -> dict[str, Any]: ...


class LeadershipLost(Exception):
    """The holder could not renew within the renew deadline, or found another holder."""


class Elector:
    """Acquires, holds and releases one Lease. Blocking API calls run in threads, each bounded in time."""

    def __init__(self, settings: Settings, leases: Leases, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._leases = leases
        self._clock = clock
        self._observed: tuple[str, str] | None = None  # (resourceVersion, holder) last seen
        self._observed_at = 0.0
        self._observed_duration = settings.lease_duration
        self._renewed_at: float | None = None  # when we last wrote the Lease as its holder (our clock)

    @property
    def leading(self) -> bool:
        return self._renewed_at is not None

    async def acquire(self) -> None:
        """Return once this replica holds the Lease."""
        while not await self._attempt():
            await asyncio.sleep(random.uniform(1.0, JITTER) * self.settings.retry_period)
        logger.info("acquired the Lease %s/%s as %s: this replica reconciles",
                    self.settings.namespace, self.settings.name, self.settings.identity)

    async def hold(self) -> None:
        """Renew every retry period; raise LeadershipLost once the renew deadline passes without a renewal."""
        while True:
            await asyncio.sleep(self.settings.retry_period)
            assert self._renewed_at is not None, "hold() before acquire()"
            remaining = self._renewed_at + self.settings.renew_deadline - self._clock()
            try:
                renewed = await asyncio.wait_for(self._attempt(), timeout=max(remaining, 0.001))
            except TimeoutError:
                renewed = False
            if not renewed and self._held_by_other():
                self._renewed_at = None
                raise LeadershipLost(f"the Lease is held by {self._observed[1] if self._observed else '?'} now")
            if not renewed and self._clock() - self._renewed_at >= self.settings.renew_deadline:
                self._renewed_at = None
                raise LeadershipLost(f"could not renew the Lease for {self.settings.renew_deadline:g} s")

    async def release(self) -> None:
        """Hand the Lease back (empty holder) if ours, so that another replica takes over at its next retry.
        Asked also when not leading: an attempt cut short by a stop may have won the Lease in the meantime."""
        self._renewed_at = None
        try:
            await asyncio.wait_for(asyncio.to_thread(self._release), timeout=self.settings.renew_deadline)
        except (TimeoutError, Conflict, ApiException, OSError, urllib3_exceptions.HTTPError) as exc:
            logger.warning("could not release the Lease (others take over when it expires): %s", exc)

    def _held_by_other(self) -> bool:
        return self._observed is not None and self._observed[1] not in ("", self.settings.identity)

    async def _attempt(self) -> bool:
        try:
            return await asyncio.to_thread(self._try_acquire_or_renew)
        except Conflict:
            return False
        except UNREACHABLE as exc:  # the API server unreachable or refusing: try again later
            logger.warning("Lease %s/%s: %s", self.settings.namespace, self.settings.name, _brief(exc))
            return False

    def _try_acquire_or_renew(self) -> bool:
        now = _now()
        lease = self._leases.get()
        if lease is None:
            self._leases.create(self._body(None, now))
            self._won()
            return True
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        self._observe(str(lease["metadata"].get("resourceVersion", "")), holder, spec)
        if holder not in ("", self.settings.identity) and not self._expired():
            return False
        self._leases.replace(self._body(lease, now))
        self._won()
        return True

    def _observe(self, version: str, holder: str, spec: dict[str, Any]) -> None:
        """Restart the expiry clock whenever the record changes: expiry is judged on our clock alone."""
        if self._observed != (version, holder):
            self._observed = (version, holder)
            self._observed_at = self._clock()
            self._observed_duration = float(spec.get("leaseDurationSeconds") or self.settings.lease_duration)

    def _expired(self) -> bool:
        return self._clock() >= self._observed_at + self._observed_duration

    def _won(self) -> None:
        self._renewed_at = self._clock()
        self._observed = None  # our own write: the next read re-observes it

    def _body(self, current: dict[str, Any] | None, now: str) -> dict[str, Any]:
        spec = dict((current or {}).get("spec") or {})
        if spec.get("holderIdentity") != self.settings.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if current else 0)
        spec.update(holderIdentity=self.settings.identity, renewTime=now,
                    leaseDurationSeconds=max(1, round(self.settings.lease_duration)))
        return self._lease(current, spec)

    def _release(self) -> None:
        lease = self._leases.get()
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.settings.identity:
            return  # someone else's: nothing of ours to hand back
        now = _now()
        spec = {**(lease.get("spec") or {}), "holderIdentity": "", "leaseDurationSeconds": 1,
                "renewTime": now, "acquireTime": now}
        self._leases.replace(self._lease(lease, spec))
        logger.info("released the Lease %s/%s", self.settings.namespace, self.settings.name)

    def _lease(self, current: dict[str, Any] | None, spec: dict[str, Any]) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.settings.name, "namespace": self.settings.namespace}
        if current is not None:  # optimistic concurrency: refused with 409 if it changed since we read it
            metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


def _now() -> str:
    """MicroTime as the API server parses it: RFC 3339 with exactly six fractional digits."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _brief(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return str(exc)


class KubernetesLeases:
    """The Lease through the kubernetes client, with the operator's credentials: $KUBECONFIG if set (what
    ``--kubeconfig`` sets), else the pod's ServiceAccount, else ~/.kube/config."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        self._namespace = settings.namespace
        self._name = settings.name
        self._timeout = timeout
        self._api = kubernetes.client.CoordinationV1Api(api_client())

    def get(self) -> dict[str, Any] | None:
        try:
            response = self._api.read_namespaced_lease(
                self._name, self._namespace, _preload_content=False, _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _json(response)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._api.create_namespaced_lease(
                self._namespace, _as_is(body), _preload_content=False, _request_timeout=self._timeout)
        except ApiException as exc:
            raise _conflict_or(exc) from None
        return _json(response)

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._api.replace_namespaced_lease(
                self._name, self._namespace, _as_is(body), _preload_content=False, _request_timeout=self._timeout)
        except ApiException as exc:
            raise _conflict_or(exc) from None
        return _json(response)


def _as_is(body: dict[str, Any]) -> Any:
    """The client sends a dict unchanged: times stay as ``_now`` wrote them, not as its models would."""
    return body


def _conflict_or(exc: ApiException) -> Exception:
    return Conflict(f"HTTP 409 {exc.reason}") if exc.status == 409 else exc


def _json(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.data)
    return data


def api_client() -> kubernetes.client.ApiClient:
    """The operator's identity, for the Lease and for audit Events (``admission.events``): $KUBECONFIG if set
    (what ``--kubeconfig`` sets, and what kopf's kubeconfig login reads), else the pod's ServiceAccount (kopf's
    in-cluster login), else ~/.kube/config."""
    configuration = kubernetes.client.Configuration()
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        try:  # the in-cluster loader re-reads the projected token as the kubelet rotates it
            kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return kubernetes.client.ApiClient(configuration)
        except kubernetes.config.ConfigException:
            pass
    kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    return kubernetes.client.ApiClient(configuration)
