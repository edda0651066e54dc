"""deploy/iam-policy.json allows exactly what the operator's code calls, plus the documented dependent actions.

The AWS operations are read from the code, not from a hand-written list: every boto3 client method and
paginator named in ``operator/imagescan/aws/`` (the only package that talks to AWS) is looked up in botocore's
service models; the role assumption botocore's credential fetcher makes is ``sts:AssumeRole``.
tests/integration/test_iam_calls.py checks, end to end, that the operator really makes these calls.
"""

from __future__ import annotations

import ast
import functools
import json
import pathlib

import botocore.session
from botocore import xform_name

ROOT = pathlib.Path(__file__).resolve().parents[2]
AWS_CODE = ROOT / "operator" / "imagescan" / "aws"
SERVICES = {"imagebuilder": "imagebuilder", "inspector2": "inspector2", "ecr": "ecr", "sqs": "sqs"}
# Operations IAM authorizes under another action's name (Service Authorization Reference: SQS's batch calls).
AUTHORIZED_AS = {"sqs:DeleteMessageBatch": "sqs:DeleteMessage"}
# Actions the code never names but that AWS authorizes as part of a call it makes (Service Authorization
# Reference), each with the call that needs it; deploy/README.md's table says the same.
DEPENDENT = {
    "imagebuilder:GetImageRecipe": "UpdateImagePipeline sends the pipeline's recipe back",
    "imagebuilder:GetContainerRecipe": "UpdateImagePipeline sends the pipeline's recipe back",
    "imagebuilder:GetInfrastructureConfiguration": "UpdateImagePipeline sends the configuration back",
    "imagebuilder:GetDistributionConfiguration": "UpdateImagePipeline sends the configuration back",
    "imagebuilder:GetWorkflow": "UpdateImagePipeline sends the workflows back",
    "imagebuilder:TagResource": "listed for UpdateImagePipeline",
    "iam:PassRole": "UpdateImagePipeline sends the pipeline's execution role back",
    "iam:CreateServiceLinkedRole": "inspector2:Enable creates Inspector's service-linked role",
}


@functools.cache
def _operations_by_method() -> dict[str, set[str]]:
    """boto3 method name -> the IAM actions ("service:Operation") it can be, over the services we use."""
    session = botocore.session.get_session()
    found: dict[str, set[str]] = {}
    for service, prefix in SERVICES.items():
        for operation in session.get_service_model(service).operation_names:
            action = f"{prefix}:{operation}"
            found.setdefault(xform_name(operation), set()).add(AUTHORIZED_AS.get(action, action))
    return found


def called_in_code() -> dict[str, list[str]]:
    """Each IAM action the aws/ package can cause, with where."""
    by_method = _operations_by_method()
    found: dict[str, list[str]] = {}
    for path in sorted(AWS_CODE.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            method = _method_named(node)
            if method is None or method not in by_method:
                continue
            actions = by_method[method]
            assert len(actions) == 1, f"{path.name}:{node.lineno}: {method} is ambiguous: {actions}"
            found.setdefault(next(iter(actions)), []).append(f"{path.name}:{node.lineno}")
            if "AssumeRoleCredentialFetcher" in ast.unparse(node):
                found.setdefault("sts:AssumeRole", []).append(f"{path.name}:{node.lineno}")
        if "AssumeRoleCredentialFetcher" in path.read_text():
            found.setdefault("sts:AssumeRole", []).append(path.name)
    return found


def _method_named(node: ast.AST) -> str | None:
    """``client.get_image(...)``/``client.enable`` -> the attribute; ``get_paginator("list_x")`` -> list_x."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "client":
        return None if node.attr == "get_paginator" else node.attr
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get_paginator"
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        return node.args[0].value
    return None


def allowed_by_policy() -> set[str]:
    policy = json.loads((ROOT / "deploy" / "iam-policy.json").read_text())
    actions: set[str] = set()
    for statement in policy["Statement"]:
        value = statement["Action"]
        actions |= {value} if isinstance(value, str) else set(value)
    return actions


def test_the_code_calls_what_the_operator_is_known_to_need() -> None:
    """A sanity check of the scan itself: it finds the calls every reconcile makes."""
    called = called_in_code()
    assert {"imagebuilder:GetImagePipeline", "imagebuilder:UpdateImagePipeline", "inspector2:Enable",
            "sts:AssumeRole", "ecr:DescribeImages"} <= set(called), called


def test_the_policy_allows_exactly_the_calls_in_the_code_and_their_dependent_actions() -> None:
    called = set(called_in_code())
    allowed = allowed_by_policy()
    assert not called - allowed, f"called by the code but not allowed: {sorted(called - allowed)}"
    assert not allowed - called - set(DEPENDENT), (
        f"allowed but never called (nor a documented dependent action): {sorted(allowed - called - set(DEPENDENT))}")
    assert set(DEPENDENT) <= allowed


def test_dependent_actions_are_documented_in_deploy_readme() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    for action in DEPENDENT:
        assert action.split(":")[1] in readme, action


def test_pass_role_is_narrowed_by_a_condition() -> None:
    policy = json.loads((ROOT / "deploy" / "iam-policy.json").read_text())
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if "iam:PassRole" in actions:
            assert statement["Condition"]["StringEquals"]["iam:PassedToService"] == "imagebuilder.amazonaws.com"


def test_only_the_aws_package_calls_aws() -> None:
    """The scan above reads aws/ only; the operator's other packages must go through it."""
    by_method = _operations_by_method()
    for folder in ("reconcile", "handlers", "admission", "models"):
        for path in sorted((ROOT / "operator" / "imagescan" / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                method = _method_named(node)
                assert method is None or method not in by_method, f"{folder}/{path.name}:{node.lineno}: {method}"
