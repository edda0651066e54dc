"""The pure decisions behind several accounts and InspectorActivation: which role a namespace grants, what a
waiting pipeline is told, what a deleted activation may turn off, and who is woken when Inspector is on."""

from __future__ import annotations

import pytest

from imagescan.models import inspectoractivation as ia
from imagescan.reconcile import access, activation, pipeline

ROLE_A = "arn:aws:iam::210987654321:role/imagescan-team-a"
ROLE_B = "arn:aws:iam::345678901234:role/imagescan-team-b"


def rules(**annotations: str) -> access.Rules:
    keys = {"allowed": access.ALLOWED_ANNOTATION, "default": access.DEFAULT_ANNOTATION,
            "external_id": access.EXTERNAL_ID_ANNOTATION}
    return access.rules_from_annotations({keys[k]: v for k, v in annotations.items()})


def test_annotations_list_roles_separated_by_commas_spaces_or_lines() -> None:
    parsed = rules(allowed=f"{ROLE_A},\n  {ROLE_B} ", default="", external_id=" ext-1 ")
    assert parsed.allowed == {ROLE_A, ROLE_B}
    assert parsed.default is None and parsed.external_id == "ext-1"


def test_no_role_asked_and_no_default_uses_the_operators_own_credentials() -> None:
    assert access.for_namespace("team", None, None) == access.Grant(role_arn=None)
    assert pipeline.role_for("team", None, None) is None


def test_the_namespace_default_role_applies_with_its_external_id() -> None:
    grant = access.for_namespace("team", rules(default=ROLE_A, external_id="x-1"), None)
    assert grant == access.Grant(role_arn=ROLE_A, external_id="x-1")


@pytest.mark.parametrize("granted", [
    None, access.Rules(), rules(allowed=ROLE_B), rules(default=ROLE_B),
    rules(allowed=ROLE_A.replace("team-a", "team-a2")), rules(allowed=ROLE_A[:-1]),
])
def test_a_role_the_namespace_was_not_granted_is_refused_before_any_call(granted: access.Rules | None) -> None:
    with pytest.raises(access.RoleNotAllowed) as refused:
        pipeline.role_for("team-a", granted, ROLE_A)
    assert refused.value.terminal
    assert ROLE_A in refused.value.message and access.ALLOWED_ANNOTATION in refused.value.message


def test_an_allowed_role_is_assumed_with_a_session_naming_the_namespace() -> None:
    role = pipeline.role_for("team-a", rules(allowed=f"{ROLE_A} {ROLE_B}", external_id="e"), ROLE_A)
    assert role is not None
    assert (role.arn, role.external_id, role.session_name) == (ROLE_A, "e", "imagescan@team-a")


def test_cluster_scoped_objects_use_the_role_they_name() -> None:
    assert access.for_cluster(ROLE_A, "e") == access.Grant(role_arn=ROLE_A, external_id="e")
    assert access.for_cluster(None, "e") == access.Grant(role_arn=None)


def view(name: str, types: tuple[str, ...], account: str = "111111111111", region: str = "us-east-1",
         states: tuple[tuple[str, str], ...] = (), deleting: bool = False) -> activation.View:
    return activation.View(name=name, account_id=account, region=region, resource_types=types, states=states,
                           deleting=deleting)


def test_a_waiting_pipeline_is_told_which_activation_would_fix_it() -> None:
    views = [view("prod", ("EC2", "ECR"), states=(("ECR", "ENABLING"),)), view("other", ("ECR",), region="eu-west-1")]
    told = activation.explain(views, "111111111111", "us-east-1", "ECR")
    assert "InspectorActivation prod requests it: ENABLING" in told
    assert "other" not in told


def test_an_activation_without_the_type_is_named_with_what_to_add() -> None:
    told = activation.explain([view("prod", ("EC2",))], "111111111111", "us-east-1", "ECR")
    assert "prod" in told and "add ECR to its spec.resourceTypes" in told


def test_no_activation_for_the_account_says_to_create_one() -> None:
    told = activation.explain([view("prod", ("ECR",), account="222222222222")], "111111111111", "us-east-1", "ECR")
    assert told.startswith("No InspectorActivation covers ECR in account 111111111111, region us-east-1")


def test_deletion_never_turns_off_a_type_another_activation_still_wants() -> None:
    this = view("a", ("EC2", "ECR", "LAMBDA"))
    others = [this, view("b", ("ECR",)), view("c", ("LAMBDA",), region="eu-west-1"),
              view("d", ("EC2",), deleting=True)]
    assert activation.types_to_disable(this, others) == ["EC2", "LAMBDA"]


def test_the_view_points_where_the_activation_last_read_else_at_its_role_and_spec() -> None:
    spec = ia.InspectorActivationSpec(role_arn=ROLE_B, region="eu-west-1")
    assert (activation.view("x", spec, ia.InspectorActivationStatus(), "us-east-1").account_id,
            activation.view("x", spec, ia.InspectorActivationStatus(), "us-east-1").region) == (
        "345678901234", "eu-west-1")
    read = ia.InspectorActivationStatus(account_id="999999999999", region="ap-south-1")
    assert activation.view("x", ia.InspectorActivationSpec(), read, "us-east-1").account_id == "999999999999"
    assert activation.view("x", ia.InspectorActivationSpec(), ia.InspectorActivationStatus(), "us-east-1").region \
        == "us-east-1"


def test_waiters_are_woken_once_by_the_type_they_wait_for() -> None:
    waiters = activation.Waiters()
    waiters.wait("p1", "111111111111", "us-east-1", "ECR")
    waiters.wait("p2", "111111111111", "us-east-1", "EC2")
    waiters.wait("p3", "222222222222", "us-east-1", "ECR")
    waiters.wait("p4", "111111111111", "us-east-1", "ECR")
    waiters.release("p4")
    assert waiters.enabled("111111111111", "us-east-1", ["ECR"]) == {"p1"}
    assert waiters.enabled("111111111111", "us-east-1", ["ECR", "EC2"]) == {"p2"}


def test_the_type_a_pipeline_needs() -> None:
    assert activation.needed_type("Container") == "ECR"
    assert activation.needed_type("AMI") == "EC2"


def test_resource_types_are_the_installed_botocore_enum() -> None:
    import botocore.session

    model = botocore.session.get_session().get_service_model("inspector2")
    enum = model.operation_model("Enable").input_shape.members["resourceTypes"].member.enum
    assert tuple(enum) == ia.RESOURCE_TYPES
    state_members = set(model.shape_for("ResourceState").members)
    assert set(ia.STATE_MEMBERS.values()) <= state_members
    # Status mirrors every member Inspector reports (botocore 1.44 added ami, which Enable does not take).
    mirrored = {field.alias or name for name, field in ia.ResourceState.model_fields.items()}
    assert state_members <= mirrored, f"add to models.inspectoractivation.ResourceState: {state_members - mirrored}"


def test_error_codes_that_only_describe_the_state_are_not_failures() -> None:
    """errorCode is a required member of inspector2's State: a healthy or moving type may carry one."""
    from imagescan.aws import inspector as aws_inspector

    def state(**types: tuple[str, str]) -> aws_inspector.AccountState:
        return aws_inspector.AccountState(account_id="1", status="ENABLED", types={
            member: aws_inspector.TypeState(status=status, error_code=code) for member, (status, code) in types.items()
        })

    activation._raise_type_errors(["EC2", "ECR"], state(ec2=("ENABLED", "ALREADY_ENABLED"),
                                                       ecr=("ENABLING", "ENABLE_IN_PROGRESS")))
    with pytest.raises(activation.ActivationFailed) as failed:
        activation._raise_type_errors(["ECR"], state(ecr=("DISABLED", "SSM_THROTTLED")))
    assert not failed.value.terminal
    with pytest.raises(activation.ActivationFailed) as failed:
        activation._raise_type_errors(["ECR"], state(ecr=("DISABLED", "ACCESS_DENIED")))
    assert failed.value.terminal
