"""Container image references, normalised so that a pod's image and a pipeline's output URI can be compared.

The Image Builder status lists output URIs such as ``123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:1.0.0-1``,
while pods may spell the same image differently (upper-case registry, ``docker.io`` implied...). Only an
exact repository + tag match counts: a tag names one build here because Image Builder tags each build with
its version. A reference pinned by digest runs whatever the digest names, whatever its tag says, so it
matches only the same digest: the operator resolves each output URI to its digest with ECR
(``latestImage.containerImageDigests``); a digest it has not seen is unknown.
"""

from __future__ import annotations

import dataclasses

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"


@dataclasses.dataclass(frozen=True)
class ImageRef:
    """One image reference: registry host, repository path, and a tag or a digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def key(self) -> str:
        """What identifies the image for matching: the digest when pinned, else the tag."""
        pin = f"@{self.digest}" if self.digest else f":{self.tag or DEFAULT_TAG}"
        return f"{self.registry}/{self.repository}{pin}"


def parse(reference: str) -> ImageRef | None:
    """The normalised reference, or None for text that is not an image reference."""
    text = reference.strip()
    if not text or any(c.isspace() for c in text):
        return None
    name, _, digest = text.partition("@")
    if digest and ":" not in digest:
        return None
    registry, path = _split_registry(name)
    repository, tag = _split_tag(path)
    if not repository or repository.endswith("/") or "//" in repository:
        return None
    if registry == DEFAULT_REGISTRY and "/" not in repository:
        repository = f"library/{repository}"  # the Docker Hub convention: nginx is library/nginx
    return ImageRef(registry=registry, repository=repository, tag=tag, digest=digest or None)


def _split_registry(name: str) -> tuple[str, str]:
    """A first component with a dot or a port, or ``localhost``, is a registry host (Docker's rule)."""
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first.lower(), rest  # host names are case-insensitive
    return DEFAULT_REGISTRY, name


def _split_tag(path: str) -> tuple[str, str | None]:
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        return path[:colon], path[colon + 1:] or None
    return path, None
