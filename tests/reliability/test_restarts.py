"""SIGKILL the operator at random moments while ImagePipelines are created, changed and deleted.

The operator runs as a subprocess exactly as deployed (``imagescan run`` with the shipped ServiceAccount's
kubeconfig, the shipped tick and intervals) and is killed with SIGKILL — no clean-up, as an OOM kill or a lost
node would — at a random point of each short life, over and over, while a seeded script creates objects,
turns scanning on and off, flips deletionPolicy and deletes objects, sometimes while no operator runs. The
emulator adds 20 ms per AWS call so that kills land in the middle of reads and writes. Then one clean run:

- converges: every object Ready for its current generation, and AWS's scanning as each spec says;
- deleted objects are gone (no finalizer left behind), and those with ``deletionPolicy: Disable`` that the
  operator had taken over (finalizer present) have scanning off;
- no pipeline lost a field: every field but scanning (and AWS's own stamps) equals the original;
- no write carried stale content: the emulator's update audit saw no UpdateImagePipeline that changed
  anything but scanning;
- the ServiceAccount was never refused (no 403 in the operator's log).
"""

from __future__ import annotations

import dataclasses
import pathlib
import random
import time
from collections import Counter
from typing import Any

import pytest

from imagescan.emulator import audit, server
from tests.integration import harness
from tests.reliability import support
from tests.support.fixtures import Cluster

LATENCY_S = 0.02
LIFE_S = (0.5, 4.0)  # how long each operator lives before SIGKILL: sometimes not even logged in


@dataclasses.dataclass
class Script:
    """The user's side: which objects exist with which spec, and what became of the deleted ones."""

    rng: random.Random
    pipelines: harness.Pipelines
    unused: list[str]
    live: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    deleted: dict[str, tuple[dict[str, Any], bool]] = dataclasses.field(default_factory=dict)
    done: Counter[str] = dataclasses.field(default_factory=Counter)

    def create(self) -> None:
        arn = self.unused.pop()
        name = arn.rsplit("/", 1)[-1]
        spec = {"pipelineArn": arn, "scanning": {"enabled": self.rng.random() < 0.7},
                "deletionPolicy": self.rng.choice(["Retain", "Disable"])}
        self.pipelines.create(name, spec)
        self.live[name] = spec
        self.done["create"] += 1

    def step(self) -> None:
        """One random change, as a GitOps sync or a person would make it."""
        choices = ["toggle", "toggle", "policy"]
        choices += ["create"] * 2 if self.unused else []
        choices += ["delete"] if len(self.live) > 4 else []
        kind = self.rng.choice(choices)
        if kind == "create":
            self.create()
            return
        name = self.rng.choice(sorted(self.live))
        spec = self.live[name]
        if kind == "toggle":
            spec["scanning"] = {"enabled": not spec["scanning"]["enabled"]}
            self.pipelines.patch(name, {"spec": {"scanning": spec["scanning"]}})
        elif kind == "policy":
            spec["deletionPolicy"] = "Disable" if spec["deletionPolicy"] == "Retain" else "Retain"
            self.pipelines.patch(name, {"spec": {"deletionPolicy": spec["deletionPolicy"]}})
        else:
            finalized = bool(((self.pipelines.get(name) or {}).get("metadata") or {}).get("finalizers"))
            self.pipelines.delete(name)
            self.deleted[name] = (self.live.pop(name), finalized)
        self.done[kind] += 1


def _not_ours(raw: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in raw.items() if key not in audit.NOT_CONTENT}


def _problems(script: Script, emulator: server.Emulator) -> list[str]:
    """What still differs from the converged state (empty when converged)."""
    found = []
    for name, spec in script.live.items():
        obj = script.pipelines.get(name) or {}
        status = obj.get("status") or {}
        ready = {c["type"]: c for c in status.get("conditions", [])}.get("Ready", {})
        if status.get("observedGeneration") != obj["metadata"]["generation"] or ready.get("status") != "True":
            found.append(f"{name}: not Ready for generation {obj['metadata']['generation']}: {ready.get('reason')}")
        scanning = emulator.world.pipeline(spec["pipelineArn"])["imageScanningConfiguration"]
        if bool(scanning.get("imageScanningEnabled")) != spec["scanning"]["enabled"]:
            found.append(f"{name}: AWS scanning {scanning} but spec says {spec['scanning']}")
    for name, (spec, finalized) in script.deleted.items():
        obj = script.pipelines.get(name)
        if obj is not None:
            found.append(f"{name}: deleted but still there, finalizers {obj['metadata'].get('finalizers')}")
        enabled = emulator.world.pipeline(spec["pipelineArn"])["imageScanningConfiguration"]["imageScanningEnabled"]
        if finalized and spec["deletionPolicy"] == "Disable" and enabled:
            found.append(f"{name}: deleted with deletionPolicy Disable but scanning is still on")
    return found


def _kill_cycles(proc: support.OperatorProcess, script: Script, cycles: int) -> None:
    rng = script.rng
    for _ in range(cycles):
        proc.start()
        life = rng.uniform(*LIFE_S)
        for moment in sorted(rng.uniform(0, life) for _ in range(rng.randint(0, 2))):
            time.sleep(max(0.0, proc.started_at + moment - time.monotonic()))
            script.step()
        time.sleep(max(0.0, proc.started_at + life - time.monotonic()))
        proc.kill()
        if rng.random() < 0.3:  # a change while no operator runs
            script.step()


def run_restarts(cluster: Cluster, emulator: server.Emulator, pipelines: harness.Pipelines, folder: pathlib.Path,
                 *, objects: int, cycles: int, seed: int) -> dict[str, Any]:
    emulator.latency_s = LATENCY_S
    arns = [emulator.world.add_pipeline(name=f"kill-{i}", container=i % 2 == 1, scanning_enabled=i % 3 == 0,
                                        findings=3, rich=True) for i in range(objects)]
    originals = {arn: emulator.world.pipeline(arn) for arn in arns}
    script = Script(random.Random(seed), pipelines, unused=list(reversed(arns)))
    for _ in range(objects * 2 // 3):
        script.create()
    assert emulator.endpoint_url
    proc = support.OperatorProcess(cluster.operator_kubeconfig, emulator.endpoint_url, cluster.namespace,
                                   folder / "operator.log")
    started = time.monotonic()
    _kill_cycles(proc, script, cycles)
    killed = time.monotonic()
    proc.start()  # the clean run
    try:
        harness.wait_for(lambda: not _problems(script, emulator) or None, 180.0, "convergence after the kills")
        converged = time.monotonic()
    finally:
        problems = _problems(script, emulator)
        proc.stop()
    lost = {arn.rsplit("/", 1)[-1]: sorted(audit.changed_fields(originals[arn], emulator.world.pipeline(arn)))
            for arn in arns}
    return {
        "seed": seed, "objects": objects, "kills": proc.kills, "starts": proc.starts, "changes": dict(script.done),
        "seconds_of_kills": round(killed - started, 1), "seconds_clean_run_to_converged": round(converged - killed, 1),
        "live_objects": len(script.live), "deleted_objects": len(script.deleted),
        "update_calls": emulator.calls["UpdateImagePipeline"], "updates_applied": len(emulator.updates.entries()),
        "aws_calls": sum(emulator.calls.values()),
        "fields_checked": sum(len(_not_ours(p)) for p in originals.values()),
        "pipelines_with_lost_fields": {name: fields for name, fields in lost.items() if fields},
        "stale_writes": [(u.arn.rsplit("/", 1)[-1], list(u.changed)) for u in emulator.updates.stale()],
        "problems": problems, "refusals": proc.refusals(), "lives": _lives(proc),
    }


def _lives(proc: support.OperatorProcess) -> dict[str, int]:
    """How far each killed life got, from its log: reconciled objects (the one line per reconcile, INFO when it
    did something), wrote AWS."""
    sections = proc.log_text().split("==== start ")[1:-1]
    return {"handled_objects": sum(" AWS call" in s for s in sections),
            "wrote_aws": sum("turned image scanning" in s for s in sections)}


def assert_restarts(result: dict[str, Any], cycles: int) -> None:
    assert result["kills"] == cycles
    assert result["problems"] == []
    assert result["pipelines_with_lost_fields"] == {}
    assert result["stale_writes"] == []
    assert result["refusals"] == [], "the operator was refused by RBAC"
    assert result["updates_applied"] > 0 and result["deleted_objects"] > 0


def test_sigkill_twenty_times(cluster: Cluster, emulator: server.Emulator, pipelines: harness.Pipelines,
                              tmp_path: pathlib.Path) -> None:
    result = run_restarts(cluster, emulator, pipelines, tmp_path, objects=14, cycles=20, seed=20261129)
    support.figures("restarts-ci", **result)
    assert_restarts(result, 20)


@pytest.mark.soak
def test_sigkill_a_hundred_times(cluster: Cluster, emulator: server.Emulator, pipelines: harness.Pipelines,
                                 tmp_path: pathlib.Path) -> None:
    result = run_restarts(cluster, emulator, pipelines, tmp_path, objects=40, cycles=100, seed=1)
    support.figures("restarts-soak", **result)
    assert_restarts(result, 100)
