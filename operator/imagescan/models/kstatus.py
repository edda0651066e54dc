"""Status conditions in the kstatus convention that Flux, Argo CD and kstatus-based tools read.

``Ready`` is always present. ``Reconciling`` and ``Stalled`` are "abnormal-true": present only while true.
Reasons carry the ACK distinction between a Terminal failure (the spec or the AWS side must change; shown
as ``Stalled``) and a Recoverable one (it clears by itself; shown as ``Reconciling``).
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterable, Sequence
from typing import Literal

from imagescan.models import base


class Type(enum.StrEnum):
    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    PAUSED = "Paused"
    POLICY_COMPLIANT = "PolicyCompliant"

    def __str__(self) -> str:
        return self.value


class Condition(base.CRDModel):
    """One observation about the object, in the standard Kubernetes condition shape."""

    type: str
    """Condition type: Ready, Reconciling, Stalled or Paused."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds: True, False or Unknown."""
    reason: str
    """A CamelCase word that says why; Stalled reasons need a change of spec or of AWS to clear."""
    message: str = ""
    """What happened and, where a person must act, what to do."""
    last_transition_time: str
    """When status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """The metadata.generation this condition was computed for."""


def ready(conditions: Iterable[Condition]) -> Condition | None:
    """The Ready condition, if there is one."""
    return next((c for c in conditions if c.type == Type.READY), None)


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def merge(
        previous: Sequence[Condition],
        wanted: Iterable[Condition],
) -> list[Condition]:
    """The new condition list: ``wanted`` replaces everything, but a condition whose status did not
    change keeps its ``lastTransitionTime`` so that tools can tell how long it has been so."""
    before = {c.type: c for c in previous}
    merged: list[Condition] = []
    for condition in wanted:
        old = before.get(condition.type)
        if old is not None and old.status == condition.status:
            condition = condition.model_copy(update={"last_transition_time": old.last_transition_time})
        merged.append(condition)
    return merged


def make(
        type_: Type,
        status: Literal["True", "False", "Unknown"],
        reason: str,
        message: str,
        generation: int | None,
) -> Condition:
    return Condition(
        type=str(type_), status=status, reason=reason, message=message,
        last_transition_time=now_rfc3339(), observed_generation=generation,
    )
