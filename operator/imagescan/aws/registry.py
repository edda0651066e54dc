"""Container image digests from ECR, for the images Image Builder reports only by tag.

Workloads are often pinned by digest (``repo@sha256:…``); to recognise them, the operator resolves each
output image URI of a new build to its digest once, with DescribeImages.
"""

from __future__ import annotations

from typing import Any

from imagescan.aws import errors

_HOST_SUFFIX = ".dkr.ecr."


def digest_references(client: Any, uris: list[str]) -> list[str]:
    """``registry/repository@sha256:…`` for each ECR image URI (one DescribeImages call per URI)."""
    references = []
    for uri in uris:
        host, _, path = uri.partition("/")
        repository, _, tag = path.rpartition(":")
        if _HOST_SUFFIX not in host or not repository or not tag:
            continue  # not an ECR tag reference: nothing to resolve
        registry_id = host.split(".", 1)[0]
        try:
            details = client.describe_images(
                registryId=registry_id, repositoryName=repository, imageIds=[{"imageTag": tag}],
            )["imageDetails"]
        except Exception as exc:
            raise errors.from_exception(exc) from None
        references += [f"{host}/{repository}@{d['imageDigest']}" for d in details if d.get("imageDigest")]
    return references
