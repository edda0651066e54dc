"""The webhook's metrics, scraped from the running operator's /metrics: one decision per admission request by
enforcement and result, the latency histogram, and the policies' verdicts as their status shows them."""

from __future__ import annotations

import dataclasses
import types
import urllib.request
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from prometheus_client import parser

from imagescan import GROUP, VERSION, metrics, probes, runner
from imagescan.emulator import server
from imagescan.handlers import admission
from tests.admission import conftest
from tests.admission.conftest import Gate
from tests.support import controlplane

NAMESPACE = "admission-metrics"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclasses.dataclass
class Observed:
    gate: Gate
    http_port: int

    def scrape(self) -> Samples:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in parser.text_string_to_metric_families(text) for s in family.samples}

    def readyz(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=5) as response:
            return int(response.status)


def _value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def observed(control_plane: controlplane.ControlPlane,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    """The admission set-up of tests/admission/conftest.py, with the operator's HTTP endpoint on."""
    tmp = tmp_path_factory.mktemp("admission-metrics")
    with pytest.MonkeyPatch.context() as patch, server.Emulator(seed=7, pipelines=0) as emulator, \
            conftest.cluster_with_aws(control_plane, NAMESPACE, tmp, patch) as api:
        conftest.prepare(api, emulator)
        port, http_port = conftest._free_port(), conftest._free_port()
        config = dataclasses.replace(conftest.operator_config(emulator, port, tmp, api.namespace),
                                     http=probes.Settings(port=http_port, addr="127.0.0.1"))
        with runner.InThread(config):
            images = conftest.wait_until_serving(api, port)
            yield Observed(Gate(api=api, port=port, ca=tmp / "certs" / "ca.crt", images=images), http_port)


def _pod(image: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "namespace": NAMESPACE},
            "spec": {"containers": [{"name": "c0", "image": image}]}}


@pytest.mark.parametrize(("pipeline", "enforcement", "result"), [
    ("clean", "None", "allowed"), ("denied", "Deny", "denied"), ("warned", "Warn", "warned"),
    ("audited", "Audit", "allowed"),
])
def test_each_request_is_one_decision_and_one_latency_sample(observed: Observed, pipeline: str, enforcement: str,
                                                             result: str) -> None:
    before = observed.scrape()
    observed.gate.review(_pod(observed.gate.images[pipeline]))
    after = observed.scrape()
    decisions = "imagescan_admission_decisions_total"
    assert _value(after, decisions, enforcement=enforcement, result=result) == \
        _value(before, decisions, enforcement=enforcement, result=result) + 1
    assert sum(v for (name, _), v in after.items() if name == decisions) == \
        sum(v for (name, _), v in before.items() if name == decisions) + 1
    latency = "imagescan_webhook_duration_seconds_count"
    assert _value(after, latency) == _value(before, latency) + 1
    assert _value(after, "imagescan_webhook_duration_seconds_bucket", le="5.0") == _value(after, latency)


def test_policy_verdicts_match_the_policies_status(observed: Observed) -> None:
    samples = observed.scrape()
    api = observed.gate.api
    for name in conftest.POLICIES:
        status = (api.get(GROUP, VERSION, "findingspolicies", api.namespace, name) or {})["status"]
        totals = status["totals"]
        for verdict, count in (("violating", totals["violating"]), ("compliant", totals["compliant"])):
            assert _value(samples, "imagescan_policy_pipelines", namespace=NAMESPACE, policy=name,
                          verdict=verdict) == count
        violating = {v["name"] for v in status["pipelines"] if not v["compliant"]}
        named = {dict(labels)["pipeline"] for (metric, labels), value in samples.items()
                 if metric == "imagescan_policy_violating" and dict(labels)["policy"] == name and value == 1}
        assert named == violating and violating


def test_ready_with_the_webhook_serving(observed: Observed) -> None:
    assert observed.readyz() == 200


async def test_a_request_that_cannot_be_judged_is_an_error_decision() -> None:
    """A bug in judging admits with a warning (failurePolicy Ignore's promise) and counts as an error."""
    observed = metrics.Metrics()
    memo = kopf.Memo(runtime=types.SimpleNamespace(metrics=observed))
    warnings: list[str] = []
    # No kopf indexes in the keywords: judging fails.
    await admission.Auditor().review(body=kopf.Body(_pod("registry.example/app:1")), dryrun=False,
                                     warnings=warnings, memo=memo, operation="CREATE")
    assert warnings and observed.registry.get_sample_value(
        "imagescan_admission_decisions_total", {"enforcement": "None", "result": "error"}) == 1

