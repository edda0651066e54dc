"""Status writing the handlers share: whole-status replacement, the InvalidSpec answer to a bad spec, and
the paused annotation and deletion policy every kind honours the same way."""

from __future__ import annotations

from typing import TypeVar

import kopf
import pydantic

from imagescan import GROUP
from imagescan.models import findingspolicy as fp
from imagescan.models import imagepipeline as ip
from imagescan.models import inspectoractivation as ia
from imagescan.models import kstatus

PAUSED_ANNOTATION = f"{GROUP}/paused"
"""Set to "true" by a user: AWS is read but never written (Observe), and deletion policies are not applied."""


def paused(annotations: kopf.Annotations) -> bool:
    """Whether a user paused the object: AWS is read, never written."""
    return annotations.get(PAUSED_ANNOTATION) == "true"


def acts_on_delete(deletion_policy: str, management_policy: str, annotations: kopf.Annotations) -> bool:
    """Whether deleting an object changes AWS: only with deletionPolicy Disable, in Manage mode, not paused."""
    return deletion_policy == "Disable" and management_policy == "Manage" and not paused(annotations)


S = TypeVar("S", ip.ImagePipelineStatus, fp.FindingsPolicyStatus, ia.InspectorActivationStatus)


def read(model: type[S], body: kopf.Body) -> S:
    """The object's status as the model; empty if it does not parse (written by an older operator, say):
    starting afresh beats failing on every event."""
    try:
        return model.model_validate(dict(body.status))
    except pydantic.ValidationError:
        return model()


def replace(patch: kopf.Patch, body: kopf.Body, status: S) -> S:
    """Replace the whole status through a merge patch: keys no longer present are set to null."""
    new = status.to_k8s()
    for key in body.status:
        if key not in new:
            patch.status[key] = None
    for key, value in new.items():
        patch.status[key] = value
    return status


def problems(exc: pydantic.ValidationError) -> str:
    """What is wrong with a spec, naming each field as a path a user finds in the YAML (and as the API
    server's messages do): ``spec.exemptions[0].expires``. A rule over the whole spec names its fields
    in its own message."""
    return "; ".join(
        f"{field_path(error['loc'])}: {error['msg']}" if error["loc"] else error["msg"]
        for error in exc.errors()
    )


def field_path(loc: tuple[int | str, ...]) -> str:
    return "spec" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def invalid_spec(previous: S, message: str, generation: int) -> S:
    """The previous status with Ready=False and Stalled=True for a spec that must be fixed."""
    return previous.model_copy(update={
        "observed_generation": generation,
        "conditions": kstatus.merge(previous.conditions, [
            kstatus.make(kstatus.Type.READY, "False", "InvalidSpec", message, generation),
            kstatus.make(kstatus.Type.STALLED, "True", "InvalidSpec", message, generation),
        ]),
    })
