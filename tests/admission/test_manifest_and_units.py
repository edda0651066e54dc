"""The shipped webhook configuration, the flags, and the pure parts of the decision."""

from __future__ import annotations

import pathlib
import ssl
from typing import Any

import kopf
import pytest
import yaml

from imagescan import cli, runner
from imagescan.admission import images, server, tls, workloads
from imagescan.handlers import admission, runtime
from tests.conftest import ROOT

WEBHOOK = ROOT / "deploy" / "webhook" / "webhook.yaml"
OPERATOR_NAMESPACE = "imagescan-system"


def _configuration() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(WEBHOOK.read_text()) if d]
    (found,) = [d for d in docs if d["kind"] == "ValidatingWebhookConfiguration"]
    return dict(found)


def test_webhooks_are_quick_tolerant_and_v1() -> None:
    for webhook in _configuration()["webhooks"]:
        assert 1 <= webhook["timeoutSeconds"] <= 5, webhook["name"]
        assert webhook["failurePolicy"] == "Ignore", webhook["name"]
        assert webhook["admissionReviewVersions"] == ["v1"]
        assert webhook["sideEffects"] in ("None", "NoneOnDryRun")
        assert webhook["clientConfig"]["service"]["namespace"] == OPERATOR_NAMESPACE


def test_failure_policy_is_documented_where_it_is_set() -> None:
    text = WEBHOOK.read_text()
    assert "failurePolicy: Ignore" in text and "set failurePolicy: Fail" in text
    assert "while the operator is down" in text
    assert "failurePolicy" in (ROOT / "deploy" / "README.md").read_text()


def test_operator_down_means_admission_continues() -> None:
    """The embedded API server calls no webhooks, so the behaviour is what the shipped policy implies: with
    Ignore, an unreachable webhook (operator down, connection refused, timeout) admits the request."""
    assert {w["failurePolicy"] for w in _configuration()["webhooks"]} == {"Ignore"}


def test_own_namespace_and_kube_system_are_not_gated() -> None:
    (workload,) = [w for w in _configuration()["webhooks"] if w["name"].startswith("workloads.")]
    (expression,) = workload["namespaceSelector"]["matchExpressions"]
    assert expression["key"] == "kubernetes.io/metadata.name" and expression["operator"] == "NotIn"
    assert {OPERATOR_NAMESPACE, "kube-system"} <= set(expression["values"])


def test_rules_cover_every_resource_the_operator_reviews() -> None:
    routed = {
        (group, resource)
        for webhook in _configuration()["webhooks"] for rule in webhook["rules"]
        for group in rule["apiGroups"] for resource in rule["resources"]
        if rule["operations"] == ["CREATE", "UPDATE"]
    }
    assert {(group, plural) for group, _, plural in admission.RESOURCES} <= routed


def test_certificate_and_ca_injection() -> None:
    docs = [d for d in yaml.safe_load_all(WEBHOOK.read_text()) if d]
    (certificate,) = [d for d in docs if d["kind"] == "Certificate"]
    (service,) = [d for d in docs if d["kind"] == "Service"]
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert f"{name}.{namespace}.svc" in certificate["spec"]["dnsNames"]
    annotation = _configuration()["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    assert annotation == f"{certificate['metadata']['namespace']}/{certificate['metadata']['name']}"


def test_no_webhook_port_no_webhook() -> None:
    config = cli.run_config(cli.parser().parse_args(["run"]))
    assert config.webhook is None
    assert not runner.registry(config)._webhooks.get_all_handlers()


def test_webhook_flags() -> None:
    args = cli.parser().parse_args(["run", "--webhook-port", "9443", "--webhook-cert", "/certs/tls.crt",
                                    "--webhook-key", "/certs/tls.key"])
    config = cli.run_config(args)
    assert config.webhook == server.Settings(port=9443, cert="/certs/tls.crt", key="/certs/tls.key")
    assert len(runner.registry(config)._webhooks.get_all_handlers()) == len(admission.RESOURCES)
    with pytest.raises(SystemExit):
        cli.run_config(cli.parser().parse_args(["run", "--webhook-port", "9443", "--webhook-cert", "x"]))


def test_self_signed_certificate_is_trusted_through_its_ca(tmp_path: pathlib.Path) -> None:
    files = tls.write_self_signed(tmp_path, ["imagescan-webhook.imagescan-system.svc", "127.0.0.1"])
    assert files.key.stat().st_mode & 0o077 == 0
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(files.cert, files.key)
    client = ssl.create_default_context(cafile=str(files.ca))
    assert client.cert_store_stats()["x509_ca"] == 1


@pytest.mark.parametrize(("reference", "key"), [
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:1.0.0-1",
     "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:1.0.0-1"),
    ("123456789012.DKR.ECR.us-east-1.amazonaws.com/team/repo:1.0.0-1",
     "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/repo:1.0.0-1"),
    ("nginx", "docker.io/library/nginx:latest"),
    ("docker.io/nginx:1.27", "docker.io/library/nginx:1.27"),
    ("localhost:5000/app:v1", "localhost:5000/app:v1"),
    ("registry.example.com:5000/app", "registry.example.com:5000/app:latest"),
    ("repo:tag@sha256:abc", "docker.io/library/repo@sha256:abc"),
])
def test_image_references_are_normalised(reference: str, key: str) -> None:
    parsed = images.parse(reference)
    assert parsed is not None and parsed.key == key


@pytest.mark.parametrize("reference", ["", "two words", "repo@nodigest", "registry.example.com/"])
def test_non_references_are_rejected(reference: str) -> None:
    assert images.parse(reference) is None


def test_ephemeral_containers_and_new_uses() -> None:
    pod = {"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "x:1"}],
                                   "ephemeralContainers": [{"name": "debug", "image": "busybox"}]}}
    assert [u.where for u in workloads.uses(pod)] == ["container a", "ephemeral container debug"]
    assert [u.image for u in workloads.new_uses(pod, {"kind": "Pod", "spec": {"containers": [
        {"name": "a", "image": "x:1"}]}})] == ["busybox"]
    assert workloads.uses({"kind": "ConfigMap", "data": {}}) == []


def test_runtime_config_has_no_webhook_by_default() -> None:
    assert runtime.Config().webhook is None


def test_the_webhook_puts_no_finalizer_on_policies_and_their_timer_keeps_the_one_they_have() -> None:
    """Audit Events need no daemon (the replica that answered posts them), so the webhook registers no daemon
    or timer, the handlers kopf adds its finalizer for. FindingsPolicies already carrying the finalizer keep
    it, for the reconciling operator's re-evaluation timer; were no such handler left, kopf would remove it
    itself ("Removing the finalizer, as there are no handlers requiring it")."""
    config = runtime.Config(webhook=server.Settings(port=9443))
    only_admission = kopf.OperatorRegistry()
    admission.register(only_admission, config)
    assert not only_admission._spawning.get_all_handlers()
    spawning = runner.registry(config)._spawning.get_all_handlers()
    policy_ids = {h.id for h in spawning if h.selector is not None and h.selector.any_name == "findingspolicies"}
    assert policy_ids == {"reevaluate"} and all(h.requires_finalizer for h in spawning)
