"""The admission-only operator (every replica under ``--leader-election``) on the real control plane: it leaves
the Lease holder's finalizer on the objects it watches. kopf removes its finalizer from every watched object
that none of its own handlers needs it for, and this operator has none that does: with the holder's
finalizer name, each standby stripped it from every ImagePipeline (whose deletionPolicy it guards) and
FindingsPolicy as soon as it saw them."""

from __future__ import annotations

import pathlib
import time

import pytest

from imagescan import GROUP, VERSION, runner
from imagescan.emulator import server
from tests.admission.conftest import AWS_TEST_ENVIRONMENT, _free_port, operator_config
from tests.support.fixtures import Cluster

FINALIZER = "imagescan.io/finalizer"


def test_the_admission_operator_leaves_the_finalizer_on_what_it_watches(
        cluster: Cluster, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in AWS_TEST_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    cluster.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "FindingsPolicy",
                   "metadata": {"name": "kept", "finalizers": [FINALIZER]}, "spec": {"enforcement": "Audit"}})
    cluster.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "ImagePipeline",
                   "metadata": {"name": "kept", "finalizers": [FINALIZER]},
                   "spec": {"pipelineArn": "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/kept"}})
    with server.Emulator(seed=7, pipelines=0) as emulator:
        config = operator_config(emulator, _free_port(), tmp_path, cluster.namespace)
        with runner.InThread(config, handlers=runner.admission_registry(config)):
            time.sleep(3.0)  # kopf has listed both kinds and processed every object (it did strip within that)
            for plural in ("findingspolicies", "imagepipelines"):
                found = cluster.get(GROUP, VERSION, plural, cluster.namespace, "kept")
                assert found is not None and found["metadata"].get("finalizers") == [FINALIZER], plural
                assert not found["metadata"].get("annotations"), plural
