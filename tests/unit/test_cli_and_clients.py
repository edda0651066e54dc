"""`imagescan run` flags and the AWS client settings they become."""

from __future__ import annotations

import pytest

from imagescan import cli
from imagescan.aws import clients


def _config(*argv: str):  # type: ignore[no-untyped-def]
    return cli.run_config(cli.parser().parse_args(["run", *argv]))


def test_run_watches_every_namespace_by_default() -> None:
    config = _config()
    assert config.clusterwide and config.namespaces == ()


def test_run_namespace_is_repeatable() -> None:
    config = _config("-n", "team-a", "--namespace", "team-b")
    assert not config.clusterwide and config.namespaces == ("team-a", "team-b")


def test_run_namespace_and_all_namespaces_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        _config("-n", "team-a", "--all-namespaces")


def test_run_aws_flags_reach_the_client_settings() -> None:
    config = _config("--region", "eu-west-1", "--aws-endpoint-url", "http://127.0.0.1:4599", "--workers", "32")
    assert config.aws == clients.Settings(default_region="eu-west-1", endpoint_url="http://127.0.0.1:4599", workers=32)


def test_botocore_service_endpoint_variable_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_IMAGEBUILDER", "http://127.0.0.1:4599")
    built = clients.Clients(clients.Settings(default_region="us-east-1"))
    assert built.imagebuilder().meta.endpoint_url == "http://127.0.0.1:4599"
    assert built.imagebuilder() is built.imagebuilder()  # one client per (service, region), reused
    assert built.imagebuilder("eu-west-1") is not built.imagebuilder()


def test_connection_pool_matches_the_worker_count() -> None:
    built = clients.Clients(clients.Settings(default_region="us-east-1", workers=64))
    assert built.imagebuilder().meta.config.max_pool_connections == 64
