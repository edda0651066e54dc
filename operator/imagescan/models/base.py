"""A pydantic base that can be turned into a structural Kubernetes schema.

Every model that ends up in a CRD derives from ``CRDModel`` so that field names are camelCase on the wire,
descriptions come from attribute docstrings (``kubectl explain`` shows them), and unknown fields never break
parsing of objects written by a newer operator.
"""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic import alias_generators


class CRDModel(pydantic.BaseModel):
    """Base for every model that is part of a custom resource."""

    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="ignore",
        frozen=True,
    )

    def to_k8s(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
