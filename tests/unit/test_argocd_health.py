"""How GitOps tools read the operator's objects: Argo CD through deploy/argocd/health.lua (run here with lupa, as
Argo CD runs it), Flux and kstatus-based tools through sigs.k8s.io/cli-utils' kstatus (the real Go library,
built by hack/kstatus.sh), over the same objects in every condition state."""

from __future__ import annotations

import importlib
import json
import pathlib
import shutil
import subprocess
from typing import Any, Literal

import pytest
import yaml

from imagescan.models import kstatus
from tests.support import controlplane

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEALTH = ROOT / "deploy" / "argocd" / "health.lua"
KINDS = ("ImagePipeline", "FindingsPolicy", "InspectorActivation")
Obj = dict[str, Any]
Status = Literal["True", "False", "Unknown"]


def _condition(type_: kstatus.Type, status: Status, reason: str, message: str, generation: int) -> Obj:
    # The shape the operator writes (camelCase, as the API server stores it).
    return kstatus.make(type_, status, reason, message, generation).to_k8s()


def _object(kind: str, generation: int = 2, observed: int | None = 2, conditions: list[Obj] | None = None,
            **metadata: Any) -> Obj:
    body: Obj = {"apiVersion": "imagescan.io/v1alpha1", "kind": kind,
                 "metadata": {"name": "sample", "generation": generation, **metadata}, "spec": {}}
    if conditions is not None:
        body["status"] = {"conditions": conditions}
        if observed is not None:
            body["status"]["observedGeneration"] = observed
    return body


def _ready(status: Status, reason: str, message: str = "", generation: int = 2) -> Obj:
    return _condition(kstatus.Type.READY, status, reason, message, generation)


STALLED_MESSAGE = "spec.pipelineArn: no such pipeline in 123456789012/us-east-1"
RECONCILING_MESSAGE = "Inspector is still scanning the latest image"


def _cases(kind: str) -> dict[str, tuple[Obj, tuple[str, str], str]]:
    """name: (object, (Argo CD status, a piece of its message), kstatus status)."""
    return {
        # kstatus cannot tell an object nobody has handled yet from a kind without conditions: Current.
        "just created, no status": (_object(kind, generation=1, observed=None), ("Progressing", "Waiting"),
                                    "Current"),
        "ready": (_object(kind, conditions=[_ready("True", "Ready", "Scanning is enabled")]),
                  ("Healthy", "Scanning is enabled"), "Current"),
        "spec changed since the last status": (
            _object(kind, generation=3, observed=2, conditions=[_ready("True", "Ready")]),
            ("Progressing", "generation 3"), "InProgress"),
        "reconciling": (
            _object(kind, conditions=[_ready("False", "Reconciling", RECONCILING_MESSAGE),
                                      _condition(kstatus.Type.RECONCILING, "True", "ScanPending",
                                                 RECONCILING_MESSAGE, 2)]),
            ("Progressing", RECONCILING_MESSAGE), "InProgress"),
        "stalled": (
            _object(kind, conditions=[_ready("False", "InvalidSpec", STALLED_MESSAGE),
                                      _condition(kstatus.Type.STALLED, "True", "InvalidSpec", STALLED_MESSAGE, 2)]),
            ("Degraded", STALLED_MESSAGE), "Failed"),
        # Ready=False alone: Argo CD says Degraded; kstatus cannot tell progress from failure, so InProgress.
        "not ready, neither reconciling nor stalled": (
            _object(kind, conditions=[_ready("False", "AccessDenied", "not authorized to UpdateImagePipeline")]),
            ("Degraded", "not authorized"), "InProgress"),
        "ready unknown": (_object(kind, conditions=[_ready("Unknown", "Pending")]), ("Progressing", "Pending"),
                          "InProgress"),
        "paused": (
            _object(kind, conditions=[_ready("True", "Paused", "imagescan.io/paused is true"),
                                      _condition(kstatus.Type.PAUSED, "True", "Paused", "imagescan.io/paused is true",
                                                 2)]),
            ("Suspended", "paused"), "Current"),
        "being deleted": (
            _object(kind, conditions=[_ready("True", "Ready")], deletionTimestamp="2026-11-30T00:00:00Z",
                    finalizers=["imagescan.io/finalizer"]),
            ("Progressing", "deleted"), "Terminating"),
    }


CASES = [(kind, name) for kind in KINDS for name in _cases(kind)]


# --- Argo CD -------------------------------------------------------------------------------------------------


def _lua() -> Any:
    # Argo CD runs health scripts with gopher-lua, a Lua 5.1; lupa ships 5.1 in most wheels.
    try:
        lupa = importlib.import_module("lupa.lua51")
    except ImportError:
        lupa = importlib.import_module("lupa")
    return lupa.LuaRuntime(unpack_returned_tuples=True)


def _argocd_health(body: Obj) -> tuple[str, str]:
    lua = _lua()
    lua.globals().obj = lua.table_from(body, recursive=True)
    result = lua.execute(HEALTH.read_text())
    return str(result["status"]), str(result["message"])


@pytest.mark.parametrize(("kind", "case"), CASES, ids=[f"{k}-{c}" for k, c in CASES])
def test_argocd_health(kind: str, case: str) -> None:
    body, (status, message), _ = _cases(kind)[case]
    got = _argocd_health(body)
    assert got[0] == status, got
    assert message.lower() in got[1].lower(), got


def test_argocd_cm_patch_carries_the_script_for_every_kind() -> None:
    patch = yaml.safe_load((ROOT / "deploy" / "argocd" / "argocd-cm-patch.yaml").read_text())
    keys = {f"resource.customizations.health.imagescan.io_{kind}" for kind in KINDS}
    assert set(patch["data"]) == keys
    assert all(value == HEALTH.read_text() for value in patch["data"].values())


# --- Flux / kstatus --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kstatus_binary() -> pathlib.Path:
    script = ROOT / "hack" / "kstatus.sh"
    cached = subprocess.run(["bash", str(script), "--print"], capture_output=True, text=True, check=False)
    if cached.returncode != 0:
        if shutil.which("go") is None:
            if controlplane.environment_says_required():
                pytest.fail("no Go toolchain to build hack/kstatus", pytrace=False)
            pytest.skip("no Go toolchain to build hack/kstatus (sigs.k8s.io/cli-utils kstatus)")
        built = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600, check=False)
        assert built.returncode == 0, built.stderr[-3000:]
        cached = built
    return pathlib.Path(cached.stdout.strip().splitlines()[-1])


def test_kstatus_reads_every_state(kstatus_binary: pathlib.Path) -> None:
    bodies = [_cases(kind)[case][0] for kind, case in CASES]
    result = subprocess.run([str(kstatus_binary)], input=json.dumps(bodies), capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    computed = json.loads(result.stdout)
    got = {f"{kind}-{case}": answer["status"] for (kind, case), answer in zip(CASES, computed, strict=True)}
    wanted = {f"{kind}-{case}": _cases(kind)[case][2] for kind, case in CASES}
    assert got == wanted
    # kstatus passes the Stalled condition's message on (what `flux get` and kubectl-wait tools print).
    stalled = computed[CASES.index(("ImagePipeline", "stalled"))]
    assert stalled["message"] == STALLED_MESSAGE
