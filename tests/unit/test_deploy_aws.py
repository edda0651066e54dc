"""deploy/aws/imagescan-events.yaml is what users deploy to feed the operator's event intake, and nothing but
CloudFormation itself would otherwise read it before they do. These tests hold it to what deploy/README.md
promises: cfn-lint finds nothing (not even informational notes); the operator is granted the three SQS actions
on its own queue and nothing more; only the stack's own rules may write into the queue; the queue, its
dead-letter queue and the rules are set up as documented.

Whether the rules' patterns match AWS's sample events (tests/data/events/) needs a pattern matcher, not a
look at the template's structure: tests/integration/test_event_rules.py puts the samples through moto's
EventBridge with the template's exact patterns.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
from cfnlint import api as cfnlint_api
from cfnlint import decode as cfnlint_decode

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "deploy" / "aws" / "imagescan-events.yaml"
EVENTS = ROOT / "tests" / "data" / "events"
QUEUE_ARN = {"Fn::GetAtt": ["Queue", "Arn"]}
OPERATOR_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}


def _load_template() -> dict[str, Any]:
    """The template as CloudFormation reads it: short tags (!GetAtt, !Ref, !If …) become their Fn:: forms."""
    template, problems = cfnlint_decode.decode(str(TEMPLATE_PATH))
    assert not problems, [str(problem) for problem in problems]
    assert template is not None
    # Through JSON: plain dicts and lists, without cfn-lint's node classes.
    loaded: dict[str, Any] = json.loads(json.dumps(template))
    return loaded


TEMPLATE = _load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def _of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: resource for name, resource in RESOURCES.items() if resource["Type"] == kind}


def _properties(name: str) -> dict[str, Any]:
    properties: dict[str, Any] = RESOURCES[name]["Properties"]
    return properties


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_cfn_lint_finds_nothing() -> None:
    config = cfnlint_api.ManualArgs(include_checks=["I"], regions=["us-east-1", "eu-west-1"])
    matches = cfnlint_api.lint_file(TEMPLATE_PATH, config=config)
    assert not matches, "\n".join(f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches)


def test_the_operator_may_only_receive_delete_and_inspect_its_queue() -> None:
    (policy,) = _of_type("AWS::IAM::ManagedPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert len(statements) == 1
    (statement,) = statements
    assert statement["Effect"] == "Allow"
    actions = _as_list(statement["Action"])
    assert len(actions) == len(OPERATOR_ACTIONS) and set(actions) == OPERATOR_ACTIONS
    assert statement["Resource"] == QUEUE_ARN, "the intake queue only: not '*', not the dead-letter queue"
    assert "NotAction" not in statement and "NotResource" not in statement


def test_the_policy_is_attached_to_the_operator_role_only_when_one_is_named() -> None:
    assert TEMPLATE["Parameters"]["OperatorRoleName"]["Default"] == ""
    assert TEMPLATE["Conditions"]["AttachToOperatorRole"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "OperatorRoleName"}, ""]}]}
    assert _properties("OperatorPolicy")["Roles"] == {
        "Fn::If": ["AttachToOperatorRole", [{"Ref": "OperatorRoleName"}], {"Ref": "AWS::NoValue"}]}


def test_only_the_stacks_own_rules_may_send_to_the_queue() -> None:
    (queue_policy,) = _of_type("AWS::SQS::QueuePolicy").values()
    assert queue_policy["Properties"]["Queues"] == [{"Ref": "Queue"}]
    (statement,) = queue_policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert _as_list(statement["Action"]) == ["sqs:SendMessage"]
    assert statement["Resource"] == QUEUE_ARN
    source_arns = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    rules = _of_type("AWS::Events::Rule")
    assert sorted(source_arns, key=str) == sorted(({"Fn::GetAtt": [name, "Arn"]} for name in rules), key=str)


def test_every_rule_is_on_the_default_bus_and_targets_the_queue() -> None:
    rules = _of_type("AWS::Events::Rule")
    assert set(rules) == {"ImageBuilderRule", "InspectorRule", "CloudTrailDriftRule"}
    for name, rule in rules.items():
        properties = rule["Properties"]
        assert properties.get("EventBusName", "default") == "default", name
        assert properties["State"] == "ENABLED", name
        assert [target["Arn"] for target in properties["Targets"]] == [QUEUE_ARN], name


def test_the_queue_long_polls_is_encrypted_and_gives_up_after_five_receives() -> None:
    queue = _properties("Queue")
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["ReceiveMessageWaitTimeSeconds"] == 20
    assert queue["VisibilityTimeout"] == 60
    assert 3600 <= queue["MessageRetentionPeriod"] <= 345600
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                                      "maxReceiveCount": 5}


def test_the_dead_letter_queue_keeps_messages_fourteen_days() -> None:
    dead_letters = _properties("DeadLetterQueue")
    assert dead_letters["SqsManagedSseEnabled"] is True
    assert dead_letters["MessageRetentionPeriod"] == 14 * 24 * 3600


@pytest.mark.parametrize("sample", sorted(EVENTS.glob("*.json")), ids=lambda path: path.stem)
def test_some_rule_names_each_sample_events_source_and_detail_type(sample: pathlib.Path) -> None:
    """A structural check only (the matching itself is in tests/integration/test_event_rules.py): no sample
    is of a kind the template forgot."""
    event = json.loads(sample.read_text())
    patterns = [rule["Properties"]["EventPattern"] for rule in _of_type("AWS::Events::Rule").values()]
    assert any(event["source"] in pattern["source"] and event["detail-type"] in pattern["detail-type"]
               for pattern in patterns)


def test_the_drift_rule_watches_the_calls_that_change_or_run_a_pipeline() -> None:
    detail = _properties("CloudTrailDriftRule")["EventPattern"]["detail"]
    assert detail["eventSource"] == ["imagebuilder.amazonaws.com"]
    assert set(detail["eventName"]) == {"UpdateImagePipeline", "DeleteImagePipeline", "StartImagePipelineExecution"}


def test_outputs_give_what_the_operator_and_its_role_need() -> None:
    outputs = TEMPLATE["Outputs"]
    assert outputs["QueueUrl"]["Value"] == {"Ref": "Queue"}
    assert outputs["QueueArn"]["Value"] == QUEUE_ARN
    assert outputs["DeadLetterQueueUrl"]["Value"] == {"Ref": "DeadLetterQueue"}
    assert outputs["OperatorPolicyArn"]["Value"] == {"Ref": "OperatorPolicy"}
    assert TEMPLATE["Parameters"]["QueueName"]["Default"] == "imagescan-events"


def test_the_standalone_iam_policy_grants_the_same_on_the_default_queue_name() -> None:
    """deploy/iam-policy.json (for those who do not deploy the stack's managed policy) says the same, on the
    queue name the template defaults to."""
    policy = json.loads((ROOT / "deploy" / "iam-policy.json").read_text())
    (statement,) = [s for s in policy["Statement"] if s.get("Sid") == "EventsQueue"]
    assert statement["Effect"] == "Allow"
    assert set(_as_list(statement["Action"])) == OPERATOR_ACTIONS
    queue_name = TEMPLATE["Parameters"]["QueueName"]["Default"]
    assert statement["Resource"] == f"arn:aws:sqs:*:*:{queue_name}"
