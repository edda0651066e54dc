"""ECR DescribeImages (JSON protocol, X-Amz-Target routing) over the emulated container builds."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from imagescan.emulator import ecr, server


def test_describe_images_resolves_build_tags_to_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    with server.Emulator(seed=2, pipelines=0) as emu:
        emu.world.add_pipeline(name="api", container=True, images=2, findings=3)
        uris = emu.world.container_uris()
        repository, tag = uris[-1].split("/", 1)[1].rsplit(":", 1)
        client = boto3.client("ecr", region_name="us-east-1", endpoint_url=emu.endpoint_url)
        (detail,) = client.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
        assert detail["imageDigest"] == ecr.digest_of(uris[-1]) and detail["imageTags"] == [tag]
        by_digest = client.describe_images(repositoryName=repository, imageIds=[{"imageDigest": detail["imageDigest"]}])
        assert by_digest["imageDetails"][0]["imageTags"] == [tag]
        assert len(client.describe_images(repositoryName=repository)["imageDetails"]) == 2  # every build
        with pytest.raises(ClientError) as missing:
            client.describe_images(repositoryName=repository, imageIds=[{"imageTag": "nope"}])
        assert missing.value.response["Error"]["Code"] == "ImageNotFoundException"
        with pytest.raises(ClientError) as unknown:
            client.describe_images(repositoryName="nothing-here")
        assert unknown.value.response["Error"]["Code"] == "RepositoryNotFoundException"
        assert emu.calls["DescribeImages"] == 5
