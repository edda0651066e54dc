"""ECR DescribeImages over the container images the emulated pipelines built.

Image Builder reports container outputs as tagged URIs; what a workload runs is often pinned by digest.
The operator resolves tags to digests with DescribeImages, so the emulator answers it for every image its
world holds, with a digest derived from the URI (stable across runs, distinct per image).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from imagescan.emulator import errors, generator, identity, world

digest_of = generator.digest_of  # tests name it here, where DescribeImages answers with it


def describe_images(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    """POST / (AmazonEC2ContainerRegistry_V20150921.DescribeImages): the caller's registry by default, in the
    signing region (another account's registry is readable, as a repository policy may allow)."""
    registry = str(params.get("registryId") or caller.account_id)
    repository = str(params["repositoryName"])
    host = f"{registry}.dkr.ecr.{caller.region}.amazonaws.com/"
    tagged = {uri.removeprefix(host).rsplit(":", 1)[1]: uri for uri in w.container_uris()
              if uri.startswith(f"{host}{repository}:")}
    if not tagged:
        raise errors.ApiError("RepositoryNotFoundException",
                              f"The repository with name '{repository}' does not exist in the registry "
                              f"with id '{registry}'")
    wanted = params.get("imageIds") or [{"imageTag": tag} for tag in tagged]
    details = []
    for image_id in wanted:
        uri = _find(tagged, image_id)
        if uri is None:
            raise errors.ApiError("ImageNotFoundException",
                                  f"The image with imageId {image_id} does not exist within the repository "
                                  f"with name '{repository}' in the registry with id '{registry}'")
        details.append({
            "registryId": registry, "repositoryName": repository, "imageDigest": digest_of(uri),
            "imageTags": [uri.rsplit(":", 1)[1]],
            "imagePushedAt": datetime.datetime(2024, 12, 1, tzinfo=datetime.UTC).timestamp(),
            "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json",
        })
    return {"imageDetails": details}


def _find(tagged: dict[str, str], image_id: dict[str, Any]) -> str | None:
    if "imageTag" in image_id:
        return tagged.get(str(image_id["imageTag"]))
    return next((uri for uri in tagged.values() if digest_of(uri) == image_id.get("imageDigest")), None)


Handler = Callable[[world.World, identity.Caller, dict[str, Any]], dict[str, Any]]
OPERATIONS: dict[str, Handler] = {"DescribeImages": describe_images}
