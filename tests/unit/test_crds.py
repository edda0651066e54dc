"""The CRDs we ship are what the models generate, and a real API server would accept them."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from imagescan import cli, crdgen
from imagescan.apiserver import cel, re2
from imagescan.models import resources

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("resource", resources.ALL, ids=lambda r: r.plural)
def test_committed_crd_equals_generated(resource: resources.Resource) -> None:
    committed = (ROOT / "crds" / f"{resource.plural}.imagescan.io.yaml").read_text()
    assert committed == crdgen.render(resource), "run `imagescan crds` and commit the result"


def test_crds_check_command_passes_on_the_repo() -> None:
    assert cli.main(["crds", "--check", "--output-dir", str(ROOT / "crds")]) == 0


def test_crds_check_command_fails_on_stale_files(tmp_path: pathlib.Path) -> None:
    (tmp_path / "imagepipelines.imagescan.io.yaml").write_text("stale\n")
    assert cli.main(["crds", "--check", "--output-dir", str(tmp_path)]) == 1


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        found += _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found += _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += _walk(schema["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize("resource", resources.ALL, ids=lambda r: r.plural)
def test_schema_is_structural_and_explained(resource: resources.Resource) -> None:
    crd = yaml.safe_load(crdgen.render(resource))
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        forbidden = {"$ref", "anyOf", "oneOf", "allOf", "not", "title", "default", "$defs"} & set(node)
        assert not forbidden, f"{path}: {forbidden} is not allowed in a structural schema"
        assert node.get("type") or node.get("x-kubernetes-preserve-unknown-fields"), f"{path}: no type"
        if path.endswith(("[]", "{}")) and node.get("type") != "object":
            continue  # a scalar list item or map value is explained by its list or map
        if path == ".metadata":
            assert node == {"type": "object"}, "kube-apiserver refuses anything else under metadata"
            continue
        assert node.get("description"), f"{path}: no description (kubectl explain would show nothing)"


def test_printer_columns_match_the_issue() -> None:
    crd = crdgen.crd(resources.IMAGE_PIPELINE)
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    default = [c["name"].upper() for c in columns if not c.get("priority")]
    wide = [c["name"].upper() for c in columns if c.get("priority")]
    assert default == ["SCANNING", "CRITICAL", "HIGH", "TOTAL", "READY", "AGE"]
    assert {"MEDIUM", "LOW", "LATEST-IMAGE"} <= set(wide)
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["ibp"] and names["categories"] == ["imagescan"]
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


def _rules(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(path, rule) for path, node in _walk(schema) for rule in node.get("x-kubernetes-validations", [])]


@pytest.mark.parametrize("resource", resources.ALL, ids=lambda r: r.plural)
def test_cel_rules_compile_in_the_embedded_server(resource: resources.Resource) -> None:
    """Only standard CEL: the embedded API server (cel-python) must run every rule kube-apiserver runs
    (no Kubernetes CEL libraries such as lowerAscii() or split())."""
    schema = crdgen.crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert cel.check_schema(schema, "openAPIV3Schema") == []
    assert _rules(schema), "the CRD has CEL rules"


@pytest.mark.parametrize("resource", resources.ALL, ids=lambda r: r.plural)
def test_rules_in_lists_are_bounded(resource: resources.Resource) -> None:
    """kube-apiserver costs a rule by the largest value it may see: every list and map on the way to a rule,
    and every string it reads, has a maximum (the real server, in tests/cluster/test_bad_input.py, accepts)."""
    schema = crdgen.crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for path, node in _walk(schema):
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path}: no maxItems"
        if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
            assert "maxProperties" in node, f"{path}: no maxProperties"
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node, f"{path}: no maxLength"


def test_rendered_crds_have_no_yaml_anchors() -> None:
    for resource in resources.ALL:
        text = crdgen.render(resource)
        assert "&id" not in text and "*id" not in text, "a rule shared by two fields must be written out in full"


def _patterns(crd: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f"{version['name']}{path}", node["pattern"]) for version in crd["spec"]["versions"]
            for path, node in _walk(version["schema"]["openAPIV3Schema"]) if "pattern" in node]


@pytest.mark.parametrize("path", sorted((ROOT / "crds").glob("*.imagescan.io.yaml")), ids=lambda p: p.name)
def test_every_pattern_compiles_as_go_regexp(path: pathlib.Path) -> None:
    """kube-apiserver refuses a CRD whose pattern Go's regexp (RE2) cannot compile (a repeat count above 1000,
    a lookahead, a backreference): the check the embedded server makes, on what we ship."""
    patterns = _patterns(yaml.safe_load(path.read_text()))
    refused = {where: re2.error(pattern) for where, pattern in patterns if re2.error(pattern)}
    assert not refused, refused
    assert patterns or path.name.startswith("findingspolicies"), "no pattern found: is the walk still right?"
