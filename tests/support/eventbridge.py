"""EventBridge on moto's server, set up as deploy/aws/imagescan-events.yaml deploys it: the template's rules with
their exact patterns, each targeting a queue; events put the way AWS services emit them."""

from __future__ import annotations

import datetime
import json
import pathlib
from typing import Any

from cfnlint import decode as cfnlint_decode

TEMPLATE_PATH = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "aws" / "imagescan-events.yaml"


def template_resources() -> dict[str, Any]:
    """The template's resources as CloudFormation reads it (cfn-lint's loader knows !GetAtt, !Ref, !If …)."""
    template, problems = cfnlint_decode.decode(str(TEMPLATE_PATH))
    assert not problems and template is not None, [str(problem) for problem in problems]
    resources: dict[str, Any] = json.loads(json.dumps(template["Resources"]))
    return resources


def create_rules(events: Any, resources: dict[str, Any], bus: str, queue_arn: str) -> list[str]:
    names = []
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Events::Rule":
            continue
        pattern = json.dumps(resource["Properties"]["EventPattern"])
        events.put_rule(Name=logical_id, EventBusName=bus, EventPattern=pattern, State="ENABLED")
        events.put_targets(Rule=logical_id, EventBusName=bus, Targets=[{"Id": "imagescan-queue", "Arn": queue_arn}])
        names.append(logical_id)
    return names


def entry(event: dict[str, Any], bus: str) -> dict[str, Any]:
    """A PutEvents entry carrying the event's source, detail-type, resources, time and detail."""
    time = datetime.datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    return {"Source": event["source"], "DetailType": event["detail-type"], "Detail": json.dumps(event["detail"]),
            "Resources": event["resources"], "Time": time, "EventBusName": bus}


def put(events: Any, entries: list[dict[str, Any]]) -> None:
    for start in range(0, len(entries), 10):
        answer = events.put_events(Entries=entries[start:start + 10])
        assert answer["FailedEntryCount"] == 0, answer["Entries"]
