"""Two replicas with ``--leader-election`` on the real control plane: one reconciles, both answer admission, and
the other takes over when the leader dies (SIGKILL) or is stopped (SIGTERM, as in a rollout).

Both run as subprocesses exactly as deployed (``imagescan run`` with the shipped ServiceAccount's kubeconfig,
the shipped RBAC including deploy/base/leader-election-rbac.yaml, the shipped tick and Lease timings), each
with its own webhook port; the emulator is AWS. Checked:

- the standby answers AdmissionReviews from its own watches and verdicts while the leader lives (a Deny
  policy refuses the violating image, a clean one is allowed), and writes nothing (no AWS write in its log);
- an Audit hit answered by the standby is posted by the standby, as exactly one ``AdmissionAudited`` Event on
  the policy (``reportingInstance`` the standby);
- after SIGKILL, the standby takes the Lease and objects created after the kill become Ready within
  ``FAILOVER_BOUND_S`` (docs/operations.md); the figures are printed;
- after SIGTERM, the leader releases the Lease and the standby takes over within ``HANDOVER_BOUND_S``;
- a leader that finds the Lease held by another (as after being cut off longer than the lease) exits with
  status 1 at its next renewal, and the standby takes over when that record expires;
- no object was handled by two replicas: exactly one UpdateImagePipeline per pipeline in the emulator's
  call log, and exactly one ScanningUpdated Event per pipeline.
"""

from __future__ import annotations

import http.client
import json
import pathlib
import socket
import ssl
import time
import uuid
from collections import Counter
from typing import Any

import kubernetes.client
import pytest

from imagescan import GROUP, VERSION
from imagescan.emulator import server
from tests.integration import harness
from tests.reliability import support
from tests.support.fixtures import Cluster

LEASE_NAMESPACE = "imagescan-system"
# Lease 15 s, retry 2 s (x 1.2 jitter): a standby takes over 13-20 s after the leader's last renewal; then its
# second kopf operator starts and reconciles. docs/operations.md quotes the same bound.
FAILOVER_BOUND_S = 30.0
# SIGTERM: the leader stops its reconciling operator and releases the Lease; the standby's next retry takes it.
HANDOVER_BOUND_S = 12.0


class Replica:
    """One ``imagescan run --leader-election`` subprocess with its own webhook port and identity."""

    def __init__(self, name: str, cluster: Cluster, emulator: server.Emulator, lease: str,
                 folder: pathlib.Path) -> None:
        self.name = name
        self.port = _free_port()
        self.ca = folder / f"{name}-certs" / "ca.crt"
        assert emulator.endpoint_url
        self.process = support.OperatorProcess(
            cluster.operator_kubeconfig, emulator.endpoint_url, cluster.namespace, folder / f"{name}.log",
            extra_args=["--leader-election", "--leader-election-namespace", LEASE_NAMESPACE,
                        "--leader-election-id", lease, "--webhook-port", str(self.port),
                        "--webhook-addr", "127.0.0.1", "--webhook-cert-dir", str(folder / f"{name}-certs")])

    def start(self, monkeypatch: pytest.MonkeyPatch) -> Replica:
        monkeypatch.setenv("POD_NAME", self.name)  # the holder identity, as the downward API gives it
        self.process.start()
        return self

    def review(self, image: str, namespace: str) -> dict[str, Any]:
        """An AdmissionReview of a Pod running ``image``, POSTed to this replica's webhook: its response."""
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "namespace": namespace},
               "spec": {"containers": [{"name": "app", "image": image}]}}
        request = {"uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
                   "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": namespace,
                   "name": "app", "operation": "CREATE", "userInfo": {"username": "jane"}, "object": pod,
                   "oldObject": None, "dryRun": False, "options": {}}
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
        connection = http.client.HTTPSConnection(
            "localhost", self.port, context=ssl.create_default_context(cafile=str(self.ca)), timeout=10)
        try:
            connection.request("POST", "/validate", json.dumps(review).encode(), {"Content-Type": "application/json"})
            reply = connection.getresponse()
            body = json.loads(reply.read())
        finally:
            connection.close()
        assert reply.status == 200 and body["response"]["uid"] == request["uid"], body
        return dict(body["response"])

    def denies(self, image: str, namespace: str) -> bool | None:
        """True/False once the webhook answers; None while it is not listening yet."""
        try:
            return not self.review(image, namespace)["allowed"]
        except OSError:  # not listening yet, or its certificate not written yet
            return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _holder(cluster: Cluster, lease: str) -> str:
    client = cluster.client()
    try:
        found = kubernetes.client.CoordinationV1Api(client).read_namespaced_lease(lease, LEASE_NAMESPACE)
        return str(found.spec.holder_identity or "")
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return ""
        raise
    finally:
        client.close()  # type: ignore[no-untyped-call]


def _wait_holder(cluster: Cluster, lease: str, name: str, timeout: float) -> float:
    """When (monotonic) the Lease was first seen held by ``name``."""
    harness.wait_for(lambda: _holder(cluster, lease) == name or None, timeout, f"{name} to hold the Lease")
    return time.monotonic()


def _add(emulator: server.Emulator, pipelines: harness.Pipelines, names: list[str]) -> dict[str, str]:
    """Pipelines with scanning off in AWS and on in the spec: the leader turns each on with one write."""
    arns = {}
    for name in names:
        arns[name] = emulator.world.add_pipeline(name=name, container=True, scanning_enabled=False, findings=2)
        pipelines.create(name, {"pipelineArn": arns[name], "scanning": {"enabled": True}})
    return arns


def _all_ready(pipelines: harness.Pipelines, names: list[str], timeout: float) -> float:
    for name in names:
        pipelines.wait_ready(name, timeout=timeout)
    return time.monotonic()


def _handled_once(emulator: server.Emulator, pipelines: harness.Pipelines, arns: dict[str, str]) -> dict[str, Any]:
    """UpdateImagePipeline calls and ScanningUpdated Events per pipeline (each must be exactly one)."""
    updates = Counter(call.arn for call in emulator.call_log.entries() if call.operation == "UpdateImagePipeline")
    events = {name: sum(e.reason == "ScanningUpdated" for e in pipelines.events(name)) for name in arns}
    return {"updates": {name: updates[arn] for name, arn in arns.items()}, "events": events}


def _prepare_gate(cluster: Cluster, emulator: server.Emulator,
                  pipelines: harness.Pipelines) -> tuple[str, str, str]:
    """A Deny policy over one violating pipeline and one clean one, an Audit policy over a third violating one;
    returns their latest images."""
    client = cluster.client()
    try:
        for name, gate, thresholds, enforcement in (("no-criticals", "deny", {"critical": 0}, "Deny"),
                                                    ("no-mediums", "audit", {"medium": 0}, "Audit")):
            kubernetes.client.CustomObjectsApi(client).create_namespaced_custom_object(
                GROUP, VERSION, cluster.namespace, "findingspolicies",
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FindingsPolicy", "metadata": {"name": name},
                 "spec": {"selector": {"matchLabels": {"gate": gate}}, "thresholds": thresholds,
                          "enforcement": enforcement}})
    finally:
        client.close()  # type: ignore[no-untyped-call]
    images = []
    for name, gate, findings in (("gated-bad", "deny", {"CRITICAL": 2}), ("gated-good", "deny", {"LOW": 1}),
                                 ("gated-audited", "audit", {"MEDIUM": 3})):
        arn = emulator.world.add_pipeline(name=name, container=True, scanning_enabled=True, findings=findings)
        pipelines.create(name, {"pipelineArn": arn})
        pipelines.patch(name, {"metadata": {"labels": {"gate": gate}}})
        images.append(harness.wait_for(lambda n=name: _latest_image(pipelines, n), 30, f"{name}'s latest image"))
    return images[0], images[1], images[2]


def _audited_once(replica: Replica, image: str, namespace: str) -> None:
    """One Audit hit on this replica: the request repeated until the replica has judged the pipeline (it logs
    each hit; before, the request is admitted as unknown and leaves nothing)."""
    def hit() -> bool:
        assert replica.review(image, namespace)["allowed"] is True
        return _audit_hits(replica, namespace) > 0

    harness.wait_for(hit, 30, f"{replica.name} to judge the audited pipeline")
    assert _audit_hits(replica, namespace) == 1


def _audit_hits(replica: Replica, namespace: str) -> int:
    return replica.process.log_text().count(f"admitted create of Pod {namespace}/app: ")


def _audit_events(pipelines: harness.Pipelines) -> list[Any]:
    return [e for e in pipelines.events("no-mediums") if e.reason == "AdmissionAudited"]


def _latest_image(pipelines: harness.Pipelines, name: str) -> str | None:
    latest = (((pipelines.get(name) or {}).get("status") or {}).get("findings") or {}).get("latestImage") or {}
    images = latest.get("containerImages") or []
    return str(images[0]) if images else None


def _wrote_aws(replica: Replica, upto: int | None = None) -> bool:
    return "turned image scanning" in replica.process.log_text()[:upto]


def test_sigkill_of_the_leader_fails_over_and_the_standby_answers_admission_meanwhile(
        cluster: Cluster, emulator: server.Emulator, pipelines: harness.Pipelines, tmp_path: pathlib.Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    lease = f"failover-{uuid.uuid4().hex[:8]}"
    a = Replica("replica-a", cluster, emulator, lease, tmp_path).start(monkeypatch)
    b = Replica("replica-b", cluster, emulator, lease, tmp_path)
    try:
        _wait_holder(cluster, lease, "replica-a", 30)
        b.start(monkeypatch)
        before = [f"before-{i}" for i in range(4)]
        arns = _add(emulator, pipelines, before)
        _all_ready(pipelines, before, 30)
        bad, good, audited = _prepare_gate(cluster, emulator, pipelines)
        # The standby judges from its own watches: it refuses the violating image once it has seen the policy.
        assert harness.wait_for(lambda: b.denies(bad, cluster.namespace), 30, "the standby's webhook to deny")
        assert b.denies(good, cluster.namespace) is False
        assert a.denies(bad, cluster.namespace) is True
        # The standby's Audit hit is the standby's Event: exactly one, though the leader runs beside it.
        _audited_once(b, audited, cluster.namespace)
        (event,) = harness.wait_for(lambda: _audit_events(pipelines), 20, "the standby's AdmissionAudited Event")
        assert (event.type, event.count, event.reporting_instance) == ("Warning", 1, "replica-b")
        assert event.involved_object.kind == "FindingsPolicy" and event.involved_object.uid
        assert event.message.startswith(f"admitted create of Pod {cluster.namespace}/app: container app (")
        assert _audit_hits(a, cluster.namespace) == 0
        time.sleep(1.0)
        assert len(_audit_events(pipelines)) == 1
        standby_log = len(b.process.log_text())

        b_alive_before_kill = b.process.alive()
        rss = {"leader_rss_mib": support.sample(a.process.pid).rss_kib // 1024,
               "standby_rss_mib": support.sample(b.process.pid).rss_kib // 1024}
        a.process.kill()
        killed = time.monotonic()
        after = [f"after-{i}" for i in range(4)]
        arns |= _add(emulator, pipelines, after)
        acquired = _wait_holder(cluster, lease, "replica-b", FAILOVER_BOUND_S + 5)
        ready = _all_ready(pipelines, after, FAILOVER_BOUND_S + 5)
        assert b.denies(bad, cluster.namespace) is True  # the new leader's webhook never stopped
        handled = _handled_once(emulator, pipelines, arns)
        figures = {"kill_to_lease_s": round(acquired - killed, 1), "kill_to_ready_s": round(ready - killed, 1),
                   "pipelines": len(arns), **rss, **handled}
        support.figures("failover-sigkill", **figures)
        assert b_alive_before_kill
        assert not _wrote_aws(b, standby_log), "the standby wrote to AWS while the leader held the Lease"
        assert figures["kill_to_ready_s"] <= FAILOVER_BOUND_S, figures
        assert set(handled["updates"].values()) == {1}, handled
        assert set(handled["events"].values()) == {1}, handled
        assert a.process.refusals() == [] and b.process.refusals() == []
    finally:
        b.process.stop()
        if a.process.alive():
            a.process.stop()


def test_sigterm_of_the_leader_releases_the_lease_and_hands_over_quickly(
        cluster: Cluster, emulator: server.Emulator, pipelines: harness.Pipelines, tmp_path: pathlib.Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    lease = f"handover-{uuid.uuid4().hex[:8]}"
    a = Replica("replica-a", cluster, emulator, lease, tmp_path).start(monkeypatch)
    b = Replica("replica-b", cluster, emulator, lease, tmp_path)
    try:
        _wait_holder(cluster, lease, "replica-a", 30)
        b.start(monkeypatch)
        before = ["before-0", "before-1"]
        arns = _add(emulator, pipelines, before)
        _all_ready(pipelines, before, 30)
        harness.wait_for(lambda: b.denies("registry.example/none:1", cluster.namespace) is False, 30,
                         "the standby's webhook")
        # A standby stopped (a rollout replaces standbys too) just goes: the Lease stays with the leader.
        c = Replica("replica-c", cluster, emulator, lease, tmp_path).start(monkeypatch)
        harness.wait_for(lambda: c.denies("registry.example/none:1", cluster.namespace) is False, 30,
                         "the third replica's webhook")
        c.process.stop()
        assert "released the Lease" not in c.process.log_text()
        assert _holder(cluster, lease) == "replica-a"

        stopping = time.monotonic()
        a.process.stop()  # SIGTERM, as a rollout sends it
        stopped = time.monotonic()
        after = ["after-0", "after-1"]
        arns |= _add(emulator, pipelines, after)
        acquired = _wait_holder(cluster, lease, "replica-b", HANDOVER_BOUND_S + 5)
        ready = _all_ready(pipelines, after, HANDOVER_BOUND_S + 5)
        handled = _handled_once(emulator, pipelines, arns)
        figures = {"sigterm_to_exit_s": round(stopped - stopping, 1),
                   "sigterm_to_lease_s": round(acquired - stopping, 1),
                   "sigterm_to_ready_s": round(ready - stopping, 1), **handled}
        support.figures("failover-sigterm", **figures)
        assert "released the Lease" in a.process.log_text()
        assert figures["sigterm_to_ready_s"] <= HANDOVER_BOUND_S, figures
        assert set(handled["updates"].values()) == {1}, handled
        assert set(handled["events"].values()) == {1}, handled
        assert a.process.refusals() == [] and b.process.refusals() == []
    finally:
        b.process.stop()
        a.process.stop()


def test_a_leader_that_finds_the_lease_taken_exits_at_once_and_writes_nothing_more(
        cluster: Cluster, emulator: server.Emulator, pipelines: harness.Pipelines, tmp_path: pathlib.Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """As when the holder was cut off for longer than the lease and another replica took over meanwhile: the
    holder must stop at its next renewal, not go on reconciling beside the new one."""
    lease = f"taken-{uuid.uuid4().hex[:8]}"
    a = Replica("replica-a", cluster, emulator, lease, tmp_path).start(monkeypatch)
    b = Replica("replica-b", cluster, emulator, lease, tmp_path)
    try:
        _wait_holder(cluster, lease, "replica-a", 30)
        b.start(monkeypatch)
        arns = _add(emulator, pipelines, ["before-0"])
        _all_ready(pipelines, ["before-0"], 30)

        client = cluster.client()
        try:
            kubernetes.client.CoordinationV1Api(client).patch_namespaced_lease(
                lease, LEASE_NAMESPACE, {"spec": {"holderIdentity": "someone-else"}})
        finally:
            client.close()  # type: ignore[no-untyped-call]
        taken = time.monotonic()
        assert a.process.process is not None
        code = harness.wait_for(lambda: a.process.process.poll() if a.process.process else None, 10,
                                "the old holder to exit")
        exited = time.monotonic()
        arns |= _add(emulator, pipelines, ["after-0"])
        acquired = _wait_holder(cluster, lease, "replica-b", FAILOVER_BOUND_S + 5)
        _all_ready(pipelines, ["after-0"], FAILOVER_BOUND_S + 5)
        handled = _handled_once(emulator, pipelines, arns)
        support.figures("failover-lease-taken", taken_to_exit_s=round(exited - taken, 1),
                        taken_to_lease_s=round(acquired - taken, 1), exit_code=code, **handled)
        assert code == 1 and "exiting now" in a.process.log_text()
        assert exited - taken <= 2 * 1.2 * 2.0 + 1.0  # at its next renewal
        assert set(handled["updates"].values()) == {1}, handled
        assert set(handled["events"].values()) == {1}, handled
    finally:
        b.process.stop()
        a.process.stop()
