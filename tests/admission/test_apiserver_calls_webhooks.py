"""The shipped ValidatingWebhookConfiguration at work on a real kube-apiserver: it calls the operator's webhook,
so clients (the ``kubernetes`` client, kubectl) see what they see in a cluster, while the operator is up and
once it is down.

The configuration is deploy/webhook/webhook.yaml's, rules, selectors, timeout and failure policy kept; only its
``clientConfig`` points at the test operator (``url`` and the CA of its self-signed certificate), except in the
tests of the shipped ``service`` reference: the API server (``--enable-aggregator-routing``) resolves the
shipped Service through its endpoints, set here to this machine's address and the operator's port, as the
endpoints controller would for the operator's Pod.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import pathlib
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import yaml

from imagescan import runner
from imagescan.emulator import server
from tests.admission.conftest import (
    _free_port,
    _listening,
    cluster_with_aws,
    operator_config,
    prepare,
    wait_until_serving,
)
from tests.conftest import ROOT
from tests.integration.harness import wait_for
from tests.support import controlplane
from tests.support.fixtures import Cluster

SHIPPED = ROOT / "deploy" / "webhook" / "webhook.yaml"
NAMESPACE = "admission-webhooks"


def _host_address() -> str | None:
    """This machine's non-loopback IPv4 address (Endpoints may not point at loopback), if it has one."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        address = str(probe.getsockname()[0])
        return None if address.startswith("127.") or address == "0.0.0.0" else address
    return None


@dataclasses.dataclass
class Wired:
    """The API server, the operator serving its webhook (stoppable), and the shipped configuration."""

    api: Cluster
    operator: runner.InThread
    port: int
    ca_bundle: str
    images: dict[str, str]

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.api.kubeconfig

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.api.plane.admin)

    def configure(self, *, failure_policy: str | None = None, service: bool = False) -> dict[str, Any]:
        """(Re)create the shipped configuration, its clientConfig pointed at the test operator."""
        (shipped,) = [doc for doc in yaml.safe_load_all(SHIPPED.read_text()) if doc
                      and doc["kind"] == "ValidatingWebhookConfiguration"]
        config = copy.deepcopy(shipped)
        for webhook in config["webhooks"]:
            if not service:
                webhook["clientConfig"] = {"url": f"https://localhost:{self.port}/validate"}
            webhook["clientConfig"]["caBundle"] = self.ca_bundle
            if failure_policy:
                webhook["failurePolicy"] = failure_policy
        applied = self.api.apply(config)
        time.sleep(1.0)  # the API server picks webhook configurations up from its informer, not at once
        return applied

    def route_service(self) -> None:
        """The shipped Service, with endpoints at this machine's address and the operator's port."""
        address = _host_address()
        if address is None:
            pytest.skip("this machine has no non-loopback IPv4 address for the Service's endpoints")
        (service,) = [doc for doc in yaml.safe_load_all(SHIPPED.read_text()) if doc and doc["kind"] == "Service"]
        self.api.apply(service)
        name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
        port_name = service["spec"]["ports"][0]["name"]
        self.api.apply({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": namespace},
                        "subsets": [{"addresses": [{"ip": address}],
                                     "ports": [{"name": port_name, "port": self.port, "protocol": "TCP"}]}]})
        self.api.apply({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                        "metadata": {"name": f"{name}-test", "namespace": namespace,
                                     "labels": {"kubernetes.io/service-name": name}},
                        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
                        "ports": [{"name": port_name, "port": self.port, "protocol": "TCP"}]})

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        cache = self.kubeconfig.parent / "cache"
        return subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(cache), *args],
                              input=stdin, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def cluster(control_plane: controlplane.ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wired]:
    """As tests/admission/conftest.py's ``gate``, but the operator can be stopped (the last tests do)."""
    tmp = tmp_path_factory.mktemp("webhooks")
    port = _free_port()
    with contextlib.ExitStack() as stack:
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        emulator = stack.enter_context(server.Emulator(seed=11, pipelines=0))
        api = stack.enter_context(cluster_with_aws(control_plane, NAMESPACE, tmp, patch))
        prepare(api, emulator)
        config = operator_config(emulator, port, tmp, api.namespace)
        # Reachable on this machine's address too: the Service's endpoints cannot be loopback.
        config = dataclasses.replace(config, webhook=dataclasses.replace(config.webhook, addr="0.0.0.0"))
        operator = stack.enter_context(runner.InThread(config))
        images = wait_until_serving(api, port)
        ca_bundle = base64.b64encode((tmp / "certs" / "ca.crt").read_bytes()).decode()
        yield Wired(api=api, operator=operator, port=port, ca_bundle=ca_bundle, images=images)
        api.plane.http("DELETE", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/"
                       "imagescan-findingspolicy")


@pytest.fixture
def up(cluster: Wired) -> Wired:
    if not _listening(cluster.port):
        pytest.fail("the operator was stopped by an earlier test: the tests of a stopped webhook come last")
    cluster.configure()
    return cluster


def _pod(name: str, image: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "app", "image": image}]}}


def _refusal(core: kubernetes.client.CoreV1Api, pod: dict[str, Any]) -> kubernetes.client.ApiException:
    with pytest.raises(kubernetes.client.ApiException) as caught:
        core.create_namespaced_pod(pod["metadata"]["namespace"], pod)
    return caught.value


def _stored(cluster: Wired, name: str, namespace: str = NAMESPACE) -> bool:
    return cluster.api.get("", "v1", "pods", namespace, name) is not None


# --- The operator up -----------------------------------------------------------------------------------------


def test_deny_policy_refuses_the_pod_naming_the_policy(up: Wired) -> None:
    error = _refusal(up.core, _pod("denied", up.images["denied"]))
    assert error.status == 403
    message = yaml.safe_load(error.body)["message"]
    assert message.startswith('admission webhook "workloads.findingspolicy.imagescan.io" denied the request: ')
    assert "FindingsPolicy no-criticals (Deny)" in message and "ImagePipeline denied" in message
    assert not _stored(up, "denied")


def test_compliant_pod_is_created_without_warnings(up: Wired) -> None:
    _, status, headers = up.core.create_namespaced_pod_with_http_info(NAMESPACE, _pod("clean", up.images["clean"]))
    assert status == 201 and "Warning" not in headers
    assert _stored(up, "clean")


def test_warn_policy_creates_the_pod_and_kubectl_prints_the_warning(up: Wired) -> None:
    result = up.kubectl("create", "-f", "-", stdin=yaml.safe_dump(_pod("warned", up.images["warned"])))
    assert result.returncode == 0, result.stderr
    assert "pod/warned created" in result.stdout
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    assert "FindingsPolicy no-highs (Warn)" in warning and "ImagePipeline warned" in warning
    assert _stored(up, "warned")


def test_kubectl_shows_the_refusal(up: Wired) -> None:
    result = up.kubectl("create", "-f", "-", stdin=yaml.safe_dump(_pod("denied-kubectl", up.images["denied"])))
    assert result.returncode != 0
    # The webhook gives no reason, so kube-apiserver's Status has none: kubectl prints no "(Forbidden)".
    assert result.stderr.startswith('Error from server: error when creating "STDIN": ')
    assert 'admission webhook "workloads.findingspolicy.imagescan.io" denied the request' in result.stderr


def test_updates_are_reviewed_too(up: Wired) -> None:
    up.core.create_namespaced_pod(NAMESPACE, _pod("updated", up.images["clean"]))
    patch = {"spec": {"containers": [{"name": "app", "image": up.images["denied"]}]}}
    with pytest.raises(kubernetes.client.ApiException) as caught:
        up.core.patch_namespaced_pod("updated", NAMESPACE, patch)
    assert caught.value.status == 403 and "no-criticals" in caught.value.body
    stored = up.api.get("", "v1", "pods", NAMESPACE, "updated") or {}
    assert stored["spec"]["containers"][0]["image"] == up.images["clean"]


def test_server_side_dry_run_is_reviewed_and_stores_nothing(up: Wired) -> None:
    denied = up.kubectl("create", "--dry-run=server", "-f", "-",
                        stdin=yaml.safe_dump(_pod("dry-denied", up.images["denied"])))
    assert denied.returncode != 0 and "no-criticals" in denied.stderr
    clean = up.kubectl("create", "--dry-run=server", "-f", "-",
                       stdin=yaml.safe_dump(_pod("dry-clean", up.images["clean"])))
    assert clean.returncode == 0, clean.stderr
    assert "pod/dry-clean created (server dry run)" in clean.stdout
    assert not _stored(up, "dry-clean")


def test_kube_system_is_not_reviewed(up: Wired) -> None:
    pod = _pod("denied", up.images["denied"], namespace="kube-system")
    _, status, _ = up.core.create_namespaced_pod_with_http_info("kube-system", pod)
    assert status == 201 and _stored(up, "denied", "kube-system")


def test_namespaces_carry_their_name_as_a_label(up: Wired) -> None:
    namespace = up.core.read_namespace("kube-system")
    assert namespace.metadata.labels["kubernetes.io/metadata.name"] == "kube-system"


def test_the_shipped_service_reference_reaches_the_webhook(up: Wired) -> None:
    up.route_service()
    up.configure(service=True)  # clientConfig.service as shipped
    error = _refusal(up.core, _pod("denied-via-service", up.images["denied"]))
    assert error.status == 403 and "no-criticals" in error.body


# --- The operator down (these stop it: keep them last) -------------------------------------------------------


@pytest.fixture
def down(cluster: Wired) -> Wired:
    cluster.operator.stop()
    wait_for(lambda: not _listening(cluster.port), what="the webhook gone")
    return cluster


def test_failure_policy_ignore_admits_while_the_operator_is_down(down: Wired) -> None:
    config = down.configure()
    assert {webhook["failurePolicy"] for webhook in config["webhooks"]} == {"Ignore"}  # as shipped
    started = time.monotonic()
    _, status, _ = down.core.create_namespaced_pod_with_http_info(
        NAMESPACE, _pod("unchecked", down.images["denied"]))
    assert status == 201 and _stored(down, "unchecked")
    assert time.monotonic() - started < 5, "a refused connection fails at once, well within timeoutSeconds"


def test_failure_policy_fail_refuses_while_the_operator_is_down(down: Wired) -> None:
    down.configure(failure_policy="Fail")
    error = _refusal(down.core, _pod("refused", down.images["denied"]))
    assert error.status == 500
    message = yaml.safe_load(error.body)["message"]
    assert 'failed calling webhook "workloads.findingspolicy.imagescan.io"' in message
    assert f"https://localhost:{down.port}/validate?timeout=5s" in message
    assert not _stored(down, "refused")
    # kube-system stays out of reach of the webhook, down or not.
    _, status, _ = down.core.create_namespaced_pod_with_http_info(
        "kube-system", _pod("system", down.images["denied"], namespace="kube-system"))
    assert status == 201


def test_failure_policy_fail_with_the_shipped_service_reference(down: Wired) -> None:
    down.route_service()
    down.configure(failure_policy="Fail", service=True)
    error = _refusal(down.core, _pod("refused-via-service", down.images["denied"]))
    assert error.status == 500 and "failed calling webhook" in error.body
