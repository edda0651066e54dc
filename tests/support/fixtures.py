"""
Pytest fixtures around the API servers (import them into conftest.py).

Two servers: the embedded one (:mod:`imagescan.apiserver`, the sandbox's) for fast tests where nothing
Kubernetes-specific is checked, and a real kube-apiserver + etcd (:mod:`tests.support.controlplane`) for every
test that drives the running operator. Kept apart from :mod:`imagescan.apiserver` so that the server itself
stays free of pytest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import pathlib
import re
import sys
from collections.abc import Iterator
from typing import NoReturn

import kubernetes.client
import kubernetes.config
import pytest

from imagescan.apiserver import server
from tests.support import controlplane

SKIP_HINT = ("no real control plane: tests that run the operator against kube-apiserver are skipped "
             "(install Go >= 1.26, then `bash hack/control-plane.sh` builds it once, ~8 min)")


@pytest.fixture
def kube_api(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[server.ApiServer]:
    """A started embedded server (namespace ``default`` exists) with ``KUBECONFIG`` pointing at it."""
    with server.ApiServer() as api:
        kubeconfig = api.write_kubeconfig(tmp_path / 'kubeconfig')
        monkeypatch.setenv('KUBECONFIG', str(kubeconfig))
        yield api


@pytest.fixture
def kube_client(kube_api: server.ApiServer, tmp_path: pathlib.Path) -> Iterator[kubernetes.client.ApiClient]:
    """A ``kubernetes`` client configured from the embedded server's kubeconfig."""
    config = str(tmp_path / 'kubeconfig')
    client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=config)
    try:
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call]


_plane: controlplane.ControlPlane | None = None
_plane_error: str | None = None


def _unavailable(why: str) -> NoReturn:
    """No control plane: a failure where one is required (CI), else a skip saying why."""
    if controlplane.environment_says_required():
        pytest.fail(f"IMAGESCAN_REQUIRE_CONTROL_PLANE is set and {why}", pytrace=False)
    pytest.skip(why)


def own_control_plane() -> controlplane.ControlPlane:
    """A control plane of a module's own (not started), for tests the session's shared one cannot host:
    cluster-wide listings and operators, CRD deletion."""
    try:
        return controlplane.ControlPlane(controlplane.binaries())
    except controlplane.NoToolchain as exc:
        _unavailable(f"{SKIP_HINT}: {exc}")


def _start_control_plane() -> controlplane.ControlPlane:
    """One control plane per test session, started on first use."""
    global _plane, _plane_error
    if _plane is None and _plane_error is None:
        try:
            _plane = controlplane.ControlPlane(controlplane.binaries()).start()
        except controlplane.NoToolchain as exc:
            _plane_error = f"{SKIP_HINT}: {exc}"
        except controlplane.ControlPlaneError as exc:
            _plane_error = f"the control plane did not start: {exc}"
            if not controlplane.environment_says_required():
                raise
    if _plane is None:
        _unavailable(str(_plane_error))
    return _plane


def control_plane_skipped() -> str | None:
    """Why the control-plane tests were skipped in this session, if they were."""
    return _plane_error if _plane is None and _plane_error and _plane_error.startswith(SKIP_HINT) else None


@pytest.fixture(scope='session')
def control_plane() -> Iterator[controlplane.ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager for the whole session, stopped at its end."""
    plane = _start_control_plane()
    print(f"\ncontrol plane: {plane.url}, started in {plane.started_in:.1f} s", file=sys.stderr)
    yield plane
    global _plane
    plane.stop()
    _plane = None


def namespace_for(request: pytest.FixtureRequest, suffix: str = '') -> str:
    """A namespace name of the test's own: readable, unique, at most 63 characters."""
    slug = re.sub(r'[^a-z0-9]+', '-', request.node.name.lower()).strip('-')[:40].strip('-')
    digest = hashlib.sha1(f"{request.node.nodeid}{suffix}".encode())
    return f"{slug}-{digest.hexdigest()[:8]}"


class ForbiddenLog(logging.Handler):
    """Collects every log record that says the operator was refused by RBAC (HTTP 403)."""

    PATTERN = re.compile(r'\b403\b|forbidden', re.IGNORECASE)

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.refusals: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        if self.PATTERN.search(text) and record.name.startswith(('kopf', 'imagescan')):
            self.refusals.append(f"{record.name}: {text}"[:500])


@dataclasses.dataclass
class Cluster:
    """One test's view of the real control plane: its own namespace, the user's (admin) and the operator's
    identities. The operator authenticates as the shipped ServiceAccount, bound to the shipped ClusterRole only.
    """

    plane: controlplane.ControlPlane
    namespace: str
    kubeconfig: pathlib.Path
    """The user's: an admin (what ``kubectl`` would use), its context in :attr:`namespace`."""
    operator_kubeconfig: pathlib.Path
    forbidden: ForbiddenLog

    def client(self) -> kubernetes.client.ApiClient:
        """A new admin client (the caller closes it)."""
        return self.plane.client()

    @property
    def url(self) -> str:
        return self.plane.url

    def apply(self, body: controlplane.Obj, *, namespace: str | None = None) -> controlplane.Obj:
        return self.plane.apply(body, namespace=namespace or self.namespace)

    def apply_yaml(self, source: pathlib.Path | str, *, namespace: str | None = None) -> list[controlplane.Obj]:
        return self.plane.apply_yaml(source, namespace=namespace or self.namespace)

    def get(self, group: str, version: str, plural: str, namespace: str | None,
            name: str) -> controlplane.Obj | None:
        return self.plane.get(group, version, plural, namespace, name)

    def objects(self, group: str, version: str, plural: str,
                namespace: str | None = None) -> list[controlplane.Obj]:
        return self.plane.objects(group, version, plural, namespace)

    def write_kubeconfig(self, path: pathlib.Path, *, namespace: str | None = None) -> pathlib.Path:
        return self.plane.write_kubeconfig(path, namespace=namespace or self.namespace)

    def assert_never_forbidden(self) -> None:
        assert not self.forbidden.refusals, (
            "the operator was refused by RBAC (the shipped ClusterRole lacks a rule):\n"
            + "\n".join(self.forbidden.refusals[:10]))


@contextlib.contextmanager
def cluster_for(plane: controlplane.ControlPlane, namespace: str, folder: pathlib.Path,
                patch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """A fresh namespace with the CRDs installed, ``KUBECONFIG`` set to the operator's identity (kopf reads it
    when it logs in), and every 403 the operator logs collected; fails the test if there was one."""
    for crd in sorted((controlplane.ROOT / 'crds').glob('*.imagescan.io.yaml')):
        plane.apply_yaml(crd)
    plane.create_namespace(namespace)
    with controlplane.operator_identity(plane, folder, namespace=namespace) as operator_kubeconfig:
        # The Lease of `imagescan run --leader-election`, in imagescan-system (operator_identity made it).
        plane.apply_yaml(controlplane.ROOT / 'deploy' / 'base' / 'leader-election-rbac.yaml')
        patch.setenv('KUBECONFIG', str(operator_kubeconfig))
        forbidden = ForbiddenLog()
        logging.getLogger().addHandler(forbidden)
        try:
            seen = Cluster(plane=plane, namespace=namespace, forbidden=forbidden,
                           kubeconfig=plane.write_kubeconfig(folder / 'kubeconfig', namespace=namespace),
                           operator_kubeconfig=operator_kubeconfig)
            yield seen
        finally:
            logging.getLogger().removeHandler(forbidden)
    seen.assert_never_forbidden()


@pytest.fixture
def cluster(control_plane: controlplane.ControlPlane, request: pytest.FixtureRequest, tmp_path: pathlib.Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """The real control plane, seen from a namespace of this test's own."""
    with cluster_for(control_plane, namespace_for(request), tmp_path, monkeypatch) as seen:
        yield seen


@pytest.fixture
def cluster_client(cluster: Cluster) -> Iterator[kubernetes.client.ApiClient]:
    """A ``kubernetes`` client as the user (admin) of :func:`cluster`."""
    client = cluster.client()
    try:
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call]
