"""A real Kubernetes control plane for the end-to-end tests: etcd, kube-apiserver and kube-controller-manager.

The binaries come from ``hack/control-plane.sh`` (built from the Go module proxy once, cached by version).
The API server runs with RBAC and two ways to authenticate: a static token file (an admin in
``system:masters`` and a plain user for RBAC checks) and ServiceAccount tokens from the TokenRequest API, which
is how the operator authenticates: as the shipped ServiceAccount bound to the shipped ClusterRole only.

kube-controller-manager runs only the controllers an operator's users rely on and the API server does not do
itself: namespace deletion, garbage collection and ClusterRole aggregation (the shipped view/edit roles).

Kept free of pytest: the fixtures in :mod:`tests.support.fixtures` decide when to skip or fail.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import ipaddress
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import kubernetes.config
import kubernetes.dynamic
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "hack" / "control-plane.sh"
# The controllers that matter to an operator's users; the rest (Deployments, Pods, nodes...) need a kubelet.
CONTROLLERS = "namespace-controller,garbage-collector-controller,clusterrole-aggregation-controller"
OPERATOR_NAMESPACE = "imagescan-system"
OPERATOR_SERVICE_ACCOUNT = "imagescan-operator"
FIELD_MANAGER = "imagescan-tests"

Obj = dict[str, Any]


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message says why."""


class NoToolchain(ControlPlaneError):
    """No Go toolchain to build the binaries with (and none cached)."""


def binaries() -> pathlib.Path:
    """The folder with kube-apiserver, kube-controller-manager and etcd: reused, or built now (minutes, once)."""
    cached = subprocess.run(["bash", str(BUILD_SCRIPT), "--print"], capture_output=True, text=True, check=False)
    if cached.returncode == 0:
        return pathlib.Path(cached.stdout.strip())
    if shutil.which("go") is None:
        raise NoToolchain(f"no Go toolchain and no cached binaries in {cached.stdout.strip()}")
    built = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    if built.returncode != 0:
        raise ControlPlaneError(f"{BUILD_SCRIPT.name} failed:\n{built.stderr[-3000:]}")
    return pathlib.Path(built.stdout.strip().splitlines()[-1])


def raw_request(url: str, method: str, body: Any, headers: dict[str, str],
                context: ssl.SSLContext | None = None) -> tuple[int, Any]:
    """One HTTP request as a client sends it; the status code and the parsed JSON (or text), errors included."""
    data = (body if isinstance(body, bytes) else json.dumps(body).encode()) if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def status_line() -> str:
    """Where this session's control plane comes from, in one line."""
    cached = subprocess.run(["bash", str(BUILD_SCRIPT), "--print"], capture_output=True, text=True, check=False)
    folder = cached.stdout.strip()
    if cached.returncode == 0:
        return f"control plane: kube-apiserver, kube-controller-manager, etcd from {folder}"
    if shutil.which("go") is None:
        return "control plane: none (no Go toolchain): tests that need kube-apiserver will be skipped"
    return (f"control plane: not built yet; the first test that needs it runs hack/control-plane.sh "
            f"(~8 min on 2 cores, once) into {folder}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- Certificates and keys ------------------------------------------------------------------------------------


def _pem_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Certificate, Any] | None,
                 *, ca: bool, sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder()
               .subject_name(name)
               .issuer_name(issuer[0].subject if issuer else name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


@dataclasses.dataclass(frozen=True)
class Pki:
    """The files the API server is started with, in one folder."""

    ca: pathlib.Path
    serving_cert: pathlib.Path
    serving_key: pathlib.Path
    service_account_key: pathlib.Path
    tokens: pathlib.Path
    admin_token: str
    user_token: str

    @classmethod
    def create(cls, folder: pathlib.Path) -> Pki:
        folder.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("imagescan-test-ca", ca_key, None, ca=True)
        serving_key = ec.generate_private_key(ec.SECP256R1())
        serving = _certificate("kube-apiserver", serving_key, (ca, ca_key), ca=False, sans=[
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("kubernetes.default.svc"), x509.IPAddress(ipaddress.ip_address("10.0.0.1"))])
        service_account_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        admin_token, user_token = secrets.token_hex(16), secrets.token_hex(16)
        pki = cls(ca=folder / "ca.crt", serving_cert=folder / "apiserver.crt", serving_key=folder / "apiserver.key",
                  service_account_key=folder / "sa.key", tokens=folder / "tokens.csv",
                  admin_token=admin_token, user_token=user_token)
        pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        pki.serving_cert.write_bytes(serving.public_bytes(serialization.Encoding.PEM))
        pki.serving_key.write_bytes(_pem_key(serving_key))
        pki.service_account_key.write_bytes(_pem_key(service_account_key))
        # token,user,uid,"group1,group2": an admin, and a plain user with no rights but what tests bind.
        pki.tokens.write_text(f'{admin_token},admin,admin,"system:masters"\n{user_token},jane,jane,\n')
        return pki


# --- Processes ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: pathlib.Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout)


def _wait(check: Any, process: Process, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise ControlPlaneError(f"{process.name} exited with {process.popen.returncode} before {what}:\n"
                                    f"{process.tail()}")
        with contextlib.suppress(OSError, urllib.error.URLError, ssl.SSLError):
            if check():
                return
        time.sleep(0.2)
    raise ControlPlaneError(f"{process.name}: no {what} after {timeout:.0f} s:\n{process.tail()}")


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on free loopback ports, in a temporary folder."""

    def __init__(self, bin_dir: pathlib.Path) -> None:
        self.bin_dir = bin_dir
        self.folder = pathlib.Path(tempfile.mkdtemp(prefix="imagescan-control-plane-"))
        self.processes: list[Process] = []
        self.pki: Pki | None = None
        self.url = ""
        self.started_in = 0.0
        self._dynamic: kubernetes.dynamic.DynamicClient | None = None
        self._client: kubernetes.client.ApiClient | None = None

    # --- Lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        started = time.monotonic()
        try:
            self.pki = Pki.create(self.folder / "pki")
            etcd_url = self._start_etcd()
            self._start_apiserver(etcd_url)
            self._start_controller_manager()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - started
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()  # type: ignore[no-untyped-call]
            self._client = None
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _spawn(self, name: str, args: list[str]) -> Process:
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen([str(self.bin_dir / name), *args], stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.folder, start_new_session=True)
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()
        url = f"http://127.0.0.1:{client}"
        etcd = self._spawn("etcd", [
            f"--data-dir={self.folder / 'etcd'}", f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}", "--unsafe-no-fsync", "--log-level=warn",
            "--quota-backend-bytes=8589934592",
        ])

        def healthy() -> bool:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        _wait(healthy, etcd, "health", 30)
        return url

    def _start_apiserver(self, etcd_url: str) -> None:
        assert self.pki is not None
        port = free_port()
        self.url = f"https://127.0.0.1:{port}"
        apiserver = self._spawn("kube-apiserver", [
            f"--etcd-servers={etcd_url}", "--bind-address=127.0.0.1", f"--secure-port={port}",
            f"--cert-dir={self.folder / 'certs'}",
            f"--tls-cert-file={self.pki.serving_cert}", f"--tls-private-key-file={self.pki.serving_key}",
            f"--token-auth-file={self.pki.tokens}", "--authorization-mode=RBAC", "--anonymous-auth=false",
            "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
            f"--service-account-issuer={self.url}", f"--service-account-key-file={self.pki.service_account_key}",
            f"--service-account-signing-key-file={self.pki.service_account_key}",
            # No kubelet or scheduler: Pods are stored, never run; the ServiceAccount admission plugin would
            # want token volumes the tests have no use for.
            "--disable-admission-plugins=ServiceAccount", "--enable-priority-and-fairness=false",
            "--endpoint-reconciler-type=none", "--v=1",
            # Webhooks given as a Service reference are reached through its endpoints (no kube-proxy here).
            "--enable-aggregator-routing=true",
        ])
        context = ssl.create_default_context(cafile=str(self.pki.ca))

        def ready() -> bool:
            request = urllib.request.Request(f"{self.url}/readyz",
                                             headers={"Authorization": f"Bearer {self.pki.admin_token}"})
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                return bool(response.status == 200)
        _wait(ready, apiserver, "/readyz", 90)

    def _start_controller_manager(self) -> None:
        assert self.pki is not None
        kubeconfig = self.write_kubeconfig(self.folder / "controller-manager.kubeconfig")
        self._spawn("kube-controller-manager", [
            f"--kubeconfig={kubeconfig}", f"--controllers={CONTROLLERS}", "--leader-elect=false",
            "--secure-port=0", "--concurrent-namespace-syncs=5", "--v=1",
        ])

    # --- Clients ------------------------------------------------------------------------------------------

    def kubeconfig(self, token: str | None = None, *, namespace: str = "default") -> Obj:
        assert self.pki is not None
        return {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "test", "cluster": {
                "server": self.url,
                "certificate-authority-data": base64.b64encode(self.pki.ca.read_bytes()).decode()}}],
            "users": [{"name": "test", "user": {"token": token or self.pki.admin_token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": namespace}}],
            "current-context": "test",
        }

    def write_kubeconfig(self, path: pathlib.Path, *, token: str | None = None,
                         namespace: str = "default") -> pathlib.Path:
        """A kubeconfig file; the admin's unless ``token`` says otherwise."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.kubeconfig(token, namespace=namespace)), encoding="utf-8")
        return path

    def client(self, token: str | None = None) -> kubernetes.client.ApiClient:
        """A new ``kubernetes`` client (the caller closes it); the admin's unless ``token`` says otherwise."""
        configuration = kubernetes.client.Configuration()
        loader = kubernetes.config.kube_config.KubeConfigLoader(self.kubeconfig(token))
        loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
        return kubernetes.client.ApiClient(configuration)

    @property
    def admin(self) -> kubernetes.client.ApiClient:
        if self._client is None:
            self._client = self.client()
        return self._client

    @property
    def dynamic(self) -> kubernetes.dynamic.DynamicClient:
        if self._dynamic is None:
            self._dynamic = kubernetes.dynamic.DynamicClient(self.admin)
        return self._dynamic

    def service_account_token(self, namespace: str, name: str, hours: int = 6) -> str:
        """A token for the ServiceAccount from the TokenRequest API (as ``kubectl create token``)."""
        core = kubernetes.client.CoreV1Api(self.admin)
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"expirationSeconds": hours * 3600}}
        answer = core.create_namespaced_service_account_token(name, namespace, request)
        return str(answer.status.token)

    @property
    def user_token(self) -> str:
        """A plain authenticated user (``jane``) with no rights until a test binds some."""
        assert self.pki is not None
        return self.pki.user_token

    # --- Objects (as the admin) ---------------------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def apply(self, body: Obj, *, namespace: str = "default") -> Obj:
        """Server-side apply (``kubectl apply --server-side --force-conflicts``); returns the object."""
        resource = self.resource(body["apiVersion"], body["kind"])
        ns = (body.get("metadata") or {}).get("namespace") or namespace if resource.namespaced else None
        applied = self.dynamic.server_side_apply(resource, body=body, name=body["metadata"]["name"],
                                                 namespace=ns, field_manager=FIELD_MANAGER, force_conflicts=True)
        return dict(applied.to_dict())

    def apply_yaml(self, source: pathlib.Path | str, *, namespace: str = "default") -> list[Obj]:
        text = source.read_text(encoding="utf-8") if isinstance(source, pathlib.Path) else source
        applied = [self.apply(doc, namespace=namespace) for doc in yaml.safe_load_all(text) if doc]
        for doc in applied:
            if doc["kind"] == "CustomResourceDefinition":
                self.wait_established(doc["metadata"]["name"])
        return applied

    def wait_established(self, crd: str, timeout: float = 30.0) -> None:
        extensions = kubernetes.client.ApiextensionsV1Api(self.admin)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conditions = extensions.read_custom_resource_definition(crd).status.conditions or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                self.dynamic.resources.invalidate_cache()
                return
            time.sleep(0.1)
        raise ControlPlaneError(f"CRD {crd} not Established after {timeout:.0f} s")

    def _path(self, group: str, version: str, plural: str, namespace: str | None) -> str:
        prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        return f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"

    def http(self, method: str, path: str, body: Any = None, *, token: str | None = None,
             content_type: str = "application/json", accept: str = "application/json") -> tuple[int, Any]:
        """One raw request; returns the status code and the parsed JSON (or text) answer, errors included."""
        assert self.pki is not None
        return raw_request(self.url + path, method, body, {
            "Authorization": f"Bearer {token or self.pki.admin_token}", "Content-Type": content_type,
            "Accept": accept}, ssl.create_default_context(cafile=str(self.pki.ca)))

    def get(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> Obj | None:
        status, body = self.http("GET", f"{self._path(group, version, plural, namespace)}/{name}")
        if status == 404:
            return None
        if status != 200:
            raise ControlPlaneError(f"GET {plural}/{name}: {status} {body}")
        return dict(body)

    def objects(self, group: str, version: str, plural: str, namespace: str | None = None) -> list[Obj]:
        status, body = self.http("GET", self._path(group, version, plural, namespace))
        if status != 200:
            raise ControlPlaneError(f"LIST {plural}: {status} {body}")
        return list(body["items"])

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> str:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}})
        return name

    def log_tail(self, name: str, lines: int = 30) -> str:
        return next((p.tail(lines) for p in self.processes if p.name == name), "")


@contextlib.contextmanager
def operator_identity(plane: ControlPlane, folder: pathlib.Path, *,
                      namespace: str = "default") -> Iterator[pathlib.Path]:
    """The shipped ServiceAccount and ClusterRole (deploy/base), and a kubeconfig that authenticates as it."""
    for name in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
        plane.apply_yaml(ROOT / "deploy" / "base" / name)
    token = plane.service_account_token(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
    yield plane.write_kubeconfig(folder / "operator.kubeconfig", token=token, namespace=namespace)


def environment_says_required() -> bool:
    """CI (``CI=true``, or ``IMAGESCAN_REQUIRE_CONTROL_PLANE=1``): no control plane is a failure, never a skip."""
    return any(os.environ.get(name, "").lower() not in ("", "0", "false")
               for name in ("IMAGESCAN_REQUIRE_CONTROL_PLANE", "CI"))
