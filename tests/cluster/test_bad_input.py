"""Bad input is refused where it is first seen, with a message naming the field (issue 8, item 6).

``tests/data/bad/`` holds one manifest per mistake and, beside it, ``<name>.expected.yaml``: either
``{refusedBy: schema, status: 422, messageContains: ...}`` (the CRD refuses it) or
``{refusedBy: operator, reason: InvalidSpec, messageContains: ...}`` (the CRD cannot say it; the operator
answers Stalled/InvalidSpec and a Warning Event). Each manifest goes to the real kube-apiserver with the
shipped CRDs; the schema-refused ones also to the embedded API server, which must refuse what the real one
refuses; the operator-side ones to the real operator (one for the module) with the AWS emulator.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from imagescan import GROUP, VERSION, runner
from imagescan.apiserver import server as embedded
from imagescan.aws import clients as aws_clients
from imagescan.emulator import server as emulator_server
from imagescan.handlers import runtime
from tests.integration.harness import wait_for
from tests.support import controlplane, fixtures

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "bad"
PLURALS = {"ImagePipeline": "imagepipelines", "FindingsPolicy": "findingspolicies",
           "InspectorActivation": "inspectoractivations"}
CLUSTER_SCOPED = {"inspectoractivations"}
STATUS_LIMIT = 32 * 1024


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    manifest: dict[str, Any]
    expected: dict[str, Any]

    @property
    def plural(self) -> str:
        return PLURALS[self.manifest["kind"]]


def load_corpus() -> list[Case]:
    cases = []
    for path in sorted(DATA.glob("*.yaml")):
        if path.name.endswith(".expected.yaml"):
            continue
        expected = yaml.safe_load(path.with_name(f"{path.stem}.expected.yaml").read_text())
        cases.append(Case(path.stem, yaml.safe_load(path.read_text()), expected))
    return cases


CORPUS = load_corpus()
SCHEMA = [c for c in CORPUS if c.expected["refusedBy"] == "schema"]
OPERATOR = [c for c in CORPUS if c.expected["refusedBy"] == "operator"]


def _ids(case: Case) -> str:
    return case.name


def test_corpus_is_complete() -> None:
    assert len(CORPUS) >= 60
    for case in CORPUS:
        assert case.manifest["metadata"]["name"] == case.name, f"{case.name}: the file name is the object's name"
        assert case.expected["refusedBy"] in ("schema", "operator"), case.name
        assert case.expected["messageContains"], case.name
    assert {c.manifest["kind"] for c in SCHEMA} == set(PLURALS)
    # InspectorActivation's schema says everything about it: nothing is left for the operator to refuse.
    assert {c.manifest["kind"] for c in OPERATOR} == {"ImagePipeline", "FindingsPolicy"}


# --- The real server, and the module's operator ---------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_cluster(control_plane: controlplane.ControlPlane, tmp_path_factory: pytest.TempPathFactory,
                request: pytest.FixtureRequest) -> Iterator[fixtures.Cluster]:
    """One namespace for the module (the CRDs installed), as the ``cluster`` fixture makes one per test."""
    with pytest.MonkeyPatch.context() as patch:
        namespace = fixtures.namespace_for(request, "bad-input")
        with fixtures.cluster_for(control_plane, namespace, tmp_path_factory.mktemp("bad"), patch) as seen:
            yield seen


@pytest.fixture(scope="module")
def bad_operator(bad_cluster: fixtures.Cluster) -> Iterator[runner.InThread]:
    """The real operator watching the module's namespace, with the emulator as AWS (no pipelines: the
    operator-side cases never get as far as AWS)."""
    with pytest.MonkeyPatch.context() as patch:
        # The autouse aws_environment fixture is per test; the operator outlives each test.
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                            ("AWS_REGION", "us-east-1"), ("AWS_CONFIG_FILE", "/dev/null"),
                            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")):
            patch.setenv(name, value)
        with emulator_server.Emulator(seed=7, pipelines=0) as emulator:
            config = runtime.Config(
                aws=aws_clients.Settings(default_region="us-east-1", endpoint_url=emulator.endpoint_url, workers=2),
                namespaces=(bad_cluster.namespace,),
            )
            with runner.InThread(config) as running:
                yield running


def _collection(plural: str, namespace: str) -> str:
    if plural in CLUSTER_SCOPED:
        return f"/apis/{GROUP}/{VERSION}/{plural}"
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"


@pytest.mark.parametrize("case", SCHEMA, ids=_ids)
def test_real_server_refuses(case: Case, bad_cluster: fixtures.Cluster) -> None:
    status, body = bad_cluster.plane.http("POST", _collection(case.plural, bad_cluster.namespace), case.manifest)
    message = body.get("message", "") if isinstance(body, dict) else str(body)
    assert status == case.expected["status"], f"{case.name}: {status} {message}"
    assert case.expected["messageContains"] in message, f"{case.name}: {message}"


@pytest.mark.parametrize("case", OPERATOR, ids=_ids)
def test_operator_refuses(case: Case, bad_cluster: fixtures.Cluster, bad_operator: runner.InThread) -> None:
    status, body = bad_cluster.plane.http("POST", _collection(case.plural, bad_cluster.namespace), case.manifest)
    assert status == 201, f"{case.name}: the schema should have let it through: {status} {body}"
    stalled = wait_for(lambda: _condition(bad_cluster, case, "Stalled"), timeout=30, what=f"{case.name}: Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == case.expected["reason"], stalled
    assert case.expected["messageContains"] in stalled["message"], stalled["message"]
    ready = _condition(bad_cluster, case, "Ready")
    assert ready is not None and ready["status"] == "False" and ready["reason"] == case.expected["reason"]
    event = wait_for(lambda: _warning(bad_cluster, case), timeout=30, what=f"{case.name}: Warning Event")
    assert case.expected["messageContains"] in event["message"], event["message"]
    assert "Traceback" not in stalled["message"]


def test_huge_reconcile_annotation_is_echoed_as_a_hash(bad_cluster: fixtures.Cluster,
                                                        bad_operator: runner.InThread) -> None:
    """A 100 KiB imagescan.io/reconcile-requested-at used to be copied into status (103,908 bytes)."""
    value = "x" * (100 * 1024)
    manifest = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ImagePipeline",
        "metadata": {"name": "huge-annotation", "annotations": {f"{GROUP}/reconcile-requested-at": value}},
        "spec": {"pipelineArn": "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/web-ami"},
    }
    status, body = bad_cluster.plane.http("POST", _collection("imagepipelines", bad_cluster.namespace), manifest)
    assert status == 201, body

    def echoed() -> dict[str, Any] | None:
        obj = bad_cluster.get(GROUP, VERSION, "imagepipelines", bad_cluster.namespace, "huge-annotation") or {}
        return obj.get("status") if (obj.get("status") or {}).get("lastHandledReconcileAt") else None
    written = wait_for(echoed, timeout=30, what="status.lastHandledReconcileAt")
    assert written["lastHandledReconcileAt"].startswith("sha256:")
    assert len(written["lastHandledReconcileAt"]) == len("sha256:") + 64
    assert len(json.dumps(written).encode()) <= STATUS_LIMIT


def _condition(cluster: fixtures.Cluster, case: Case, type_: str) -> dict[str, Any] | None:
    obj = cluster.get(GROUP, VERSION, case.plural, cluster.namespace, case.name) or {}
    found = [c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_]
    return dict(found[0]) if found else None


def _warning(cluster: fixtures.Cluster, case: Case) -> dict[str, Any] | None:
    events = cluster.objects("", "v1", "events", cluster.namespace)
    found = [e for e in events if e["involvedObject"].get("name") == case.name
             and e["type"] == "Warning" and e["reason"] == case.expected["reason"]]
    return found[0] if found else None




# --- The embedded server ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded_api() -> Iterator[embedded.ApiServer]:
    with embedded.ApiServer() as api:
        for crd in sorted((controlplane.ROOT / "crds").glob("*.imagescan.io.yaml")):
            api.apply_yaml(crd)
        yield api


@pytest.mark.parametrize("case", SCHEMA, ids=_ids)
def test_embedded_server_refuses(case: Case, embedded_api: embedded.ApiServer) -> None:
    """The sandbox's API server refuses what kube-apiserver refuses, naming the same field."""
    with pytest.raises(embedded.HttpError) as refused:
        embedded_api.http("POST", _collection(case.plural, "default"), case.manifest)
    message = str(refused.value.status.get("message", ""))
    assert refused.value.code == case.expected["status"], f"{case.name}: {refused.value.code} {message}"
    assert case.expected["messageContains"] in message, f"{case.name}: {message}"


@pytest.mark.parametrize("case", OPERATOR, ids=_ids)
def test_embedded_server_accepts_what_only_the_operator_refuses(case: Case, embedded_api: embedded.ApiServer) -> None:
    created = embedded_api.http("POST", _collection(case.plural, "default"), case.manifest)
    assert created["metadata"]["name"] == case.name
