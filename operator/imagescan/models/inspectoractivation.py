"""The InspectorActivation custom resource: "Amazon Inspector must scan these resource types here".

The Image Builder console's step 1 ("activate Amazon Inspector security scans for your account") as a
cluster-scoped object: one per account and region (or several asking for different types). Cluster-scoped on
purpose: activating a paid service account-wide, and naming the role to do it with, is a cluster admin's call,
not a tenant's. The status mirrors inspector2 BatchGetAccountStatus.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from imagescan.models import base, kstatus
from imagescan.models import imagepipeline as ip

# inspector2's ResourceScanType enum (Enable's resourceTypes) in the installed botocore's order; copied so the
# CRD does not change with botocore, and checked against it in tests/unit/test_activation_models.py.
RESOURCE_TYPES = ("EC2", "ECR", "LAMBDA", "LAMBDA_CODE", "CODE_REPOSITORY")
ResourceType = Literal["EC2", "ECR", "LAMBDA", "LAMBDA_CODE", "CODE_REPOSITORY"]
# Each type's member in BatchGetAccountStatus' resourceState (and so in our status).
STATE_MEMBERS: dict[str, str] = {
    "EC2": "ec2", "ECR": "ecr", "LAMBDA": "lambda", "LAMBDA_CODE": "lambdaCode", "CODE_REPOSITORY": "codeRepository",
}
# STS AssumeRole's ExternalId: 2-1224 of these characters. The length is max_length's job: RE2 (the API
# server's regex engine) refuses repeat counts above 1000.
EXTERNAL_ID_PATTERN = r"^[-+=,.@:/_A-Za-z0-9]{2,}$"


def _image_builder_types() -> list[ResourceType]:
    return ["EC2", "ECR"]


class InspectorActivationSpec(base.CRDModel):
    """Where Amazon Inspector must be active, for which resource types, and how the operator may act."""

    region: str | None = pydantic.Field(default=None, pattern=ip.REGION_PATTERN, max_length=32)
    """AWS region to activate Inspector in, e.g. eu-west-1; default: the operator's region."""
    role_arn: ip.RoleArn | None = None
    """IAM role the operator assumes to reach the account (arn:aws:iam::ACCOUNT:role/NAME); its account is the
    one activated. Default: the operator's own credentials and account."""
    external_id: str | None = pydantic.Field(default=None, pattern=EXTERNAL_ID_PATTERN, max_length=1224)
    """External id the role's trust policy requires (sts:ExternalId), if any."""
    resource_types: list[ResourceType] = pydantic.Field(
        default_factory=_image_builder_types, min_length=1, max_length=len(RESOURCE_TYPES),
        json_schema_extra={"x-kubernetes-list-type": "set"})
    """Resource types Inspector must scan: EC2, ECR, LAMBDA, LAMBDA_CODE, CODE_REPOSITORY (default EC2 and ECR,
    what Image Builder's AMI and container scanning need)."""
    management_policy: Literal["Manage", "Observe"] = "Manage"
    """Manage (default): turn the types on (inspector2 Enable). Observe: never write, only report."""
    deletion_policy: Literal["Retain", "Disable"] = "Retain"
    """On delete, Retain (default) leaves Inspector as it is; Disable turns off the types this object asked for
    that no other InspectorActivation for the same account and region still wants."""
    resync_interval: ip.Interval = "10m"
    """How often Inspector's state is re-read, e.g. 10m (default 10m). Between 1m and 168h."""

    @pydantic.field_validator("resource_types")
    @classmethod
    def _each_type_once(cls, types: list[ResourceType]) -> list[ResourceType]:
        # What x-kubernetes-list-type: set makes the API server refuse, for objects stored before it.
        if len(set(types)) != len(types):
            raise ValueError("each resource type may be listed once")
        return types

    @property
    def resync_seconds(self) -> float:
        return ip.parse_duration(self.resync_interval)


class TypeState(base.CRDModel):
    """Inspector's state for one resource type."""

    status: str | None = None
    """ENABLING, ENABLED, DISABLING, DISABLED, SUSPENDING or SUSPENDED."""
    error_code: str | None = None
    """Inspector's error code for this type, e.g. ACCESS_DENIED."""
    error_message: str | None = None
    """Inspector's error message for this type."""


class ResourceState(base.CRDModel):
    """Inspector's state per resource type, as BatchGetAccountStatus reports it."""

    ec2: TypeState | None = None
    """Amazon EC2 instance (and AMI build) scanning."""
    ecr: TypeState | None = None
    """Amazon ECR container image scanning."""
    lambda_: TypeState | None = pydantic.Field(default=None, alias="lambda")
    """AWS Lambda standard scanning."""
    lambda_code: TypeState | None = None
    """AWS Lambda code scanning."""
    code_repository: TypeState | None = None
    """Code repository scanning."""
    ami: TypeState | None = None
    """Amazon Machine Image scanning (reported by newer Inspector APIs; not a type Enable takes yet)."""

    def of(self, resource_type: str) -> TypeState | None:
        value = getattr(self, "lambda_" if resource_type == "LAMBDA" else _attribute(resource_type))
        return value if isinstance(value, TypeState) else None


def _attribute(resource_type: str) -> str:
    return resource_type.lower()


class InspectorActivationStatus(base.CRDModel):
    """What the operator last read from Inspector and did."""

    observed_generation: int | None = None
    """The metadata.generation the status describes."""
    conditions: list[kstatus.Condition] = pydantic.Field(default_factory=list)
    """Ready, and Reconciling / Stalled / Paused while true."""
    account_id: str | None = None
    """The AWS account activated."""
    region: str | None = None
    """The AWS region activated."""
    state: str | None = None
    """Inspector's overall state for the account (ENABLED, DISABLED ...)."""
    resource_state: ResourceState | None = None
    """Inspector's state per resource type."""
    last_synced: str | None = None
    """When Inspector was last read."""
