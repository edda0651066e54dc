"""Helpers for end-to-end tests: apply ImagePipelines as a user would, and wait for what they would see."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import kubernetes.client

from imagescan import GROUP, VERSION

T = TypeVar("T")
PLURAL = "imagepipelines"


def wait_for(probe: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll until ``probe`` returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last!r}")


class _Conditions:
    """Reading and waiting for an object's status conditions, whatever its kind."""

    kind = "object"

    def get(self, name: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def condition(self, name: str, type_: str = "Ready") -> dict[str, Any] | None:
        for condition in (self.get(name) or {}).get("status", {}).get("conditions", []):
            if condition["type"] == type_:
                return dict(condition)
        return None

    def wait_condition(self, name: str, type_: str, status: str, reason: str | None = None,
                       timeout: float = 20.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            found = self.condition(name, type_)
            if found and found["status"] == status and (reason is None or found["reason"] == reason):
                return found
            return None
        return wait_for(probe, timeout, f"{self.kind} {name}: {type_}={status} {reason or ''}")


class Pipelines(_Conditions):
    """ImagePipeline objects through the kubernetes client, the way kubectl users touch them."""

    kind = "ImagePipeline"

    def __init__(self, api_client: kubernetes.client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.api = kubernetes.client.CustomObjectsApi(api_client)
        self.core = kubernetes.client.CoreV1Api(api_client)

    def create(self, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ImagePipeline",
            "metadata": {"name": name, "annotations": annotations or {}}, "spec": spec,
        }
        return dict(self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body))

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name))
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return dict(self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, patch))

    def reconcile_now(self, name: str, value: str) -> None:
        """What a user does rather than wait for the next resync (10 min by default): ask for a reconcile, and
        wait until the operator says it acted on the request."""
        self.patch(name, {"metadata": {"annotations": {"imagescan.io/reconcile-requested-at": value}}})
        wait_for(lambda: (self.get(name) or {}).get("status", {}).get("lastHandledReconcileAt") == value,
                 what=f"{name}: reconcile {value} handled")

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def wait_ready(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        self.wait_condition(name, "Ready", "True", timeout=timeout)
        obj = self.get(name)
        assert obj is not None
        return obj

    def events(self, name: str) -> list[Any]:
        items = self.core.list_namespaced_event(self.namespace).items
        return [e for e in items if e.involved_object.name == name]


ACTIVATIONS = "inspectoractivations"


class Activations(_Conditions):
    """InspectorActivations (cluster-scoped) as a cluster admin applies them. Every test's operator sees every
    activation on the shared control plane, so :meth:`delete_all` removes this test's before its operator stops."""

    kind = "InspectorActivation"

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self.api = kubernetes.client.CustomObjectsApi(api_client)
        self.created: list[str] = []

    def create(self, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "InspectorActivation",
            "metadata": {"name": name, "annotations": annotations or {}}, "spec": spec,
        }
        self.created.append(name)
        return dict(self.api.create_cluster_custom_object(GROUP, VERSION, ACTIVATIONS, body))

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.api.get_cluster_custom_object(GROUP, VERSION, ACTIVATIONS, name))
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return dict(self.api.patch_cluster_custom_object(GROUP, VERSION, ACTIVATIONS, name, patch))

    def delete(self, name: str, timeout: float = 30.0) -> None:
        """Delete and wait until it is gone (the operator has run its deletion policy)."""
        self.api.delete_cluster_custom_object(GROUP, VERSION, ACTIVATIONS, name)
        wait_for(lambda: self.get(name) is None, timeout, f"InspectorActivation {name} gone")

    def delete_all(self) -> None:
        for name in self.created:
            if self.get(name) is not None:
                self.delete(name, timeout=60.0)
