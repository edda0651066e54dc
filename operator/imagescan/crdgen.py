"""Turn the pydantic models into CustomResourceDefinitions the API server accepts.

pydantic writes JSON Schema 2020-12; a CRD needs a *structural* OpenAPI v3 schema: no ``$ref``, no
``anyOf``/``oneOf`` for optional values (``nullable`` instead), no ``title``, and no ``default`` (defaults would
make the API server rewrite objects the user keeps in Git; the models apply them when parsing). Every field
must carry a description so that ``kubectl explain`` is useful: a missing one is an error here, not a gap.
"""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

from imagescan import GROUP, VERSION
from imagescan.models import base, resources

# propertyNames (pydantic's schema for constrained dict keys) is not part of a CRD's OpenAPI subset: the
# models check such keys themselves.
_DROPPED_KEYS = {"title", "default", "$defs", "propertyNames"}


class SchemaError(Exception):
    """The models cannot be expressed as a structural schema."""


def crd(resource: resources.Resource) -> dict[str, Any]:
    """The CustomResourceDefinition for one resource."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{resource.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": resource.scope,
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.singular,
                "shortNames": list(resource.short_names),
                "categories": list(resource.categories),
            },
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [_column(c) for c in resource.columns],
                "schema": {"openAPIV3Schema": _root_schema(resource)},
            }],
        },
    }


def _column(column: resources.PrinterColumn) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": column.name, "type": column.type, "jsonPath": column.json_path,
        "description": column.description,
    }
    if column.priority:
        out["priority"] = column.priority
    return out


def _root_schema(resource: resources.Resource) -> dict[str, Any]:
    return {
        "type": "object",
        "description": resource.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            # kube-apiserver refuses anything under metadata but type and name/generateName constraints
            # ("must not specify anything other than name and generateName"), a description included.
            "metadata": {"type": "object"},
            "spec": model_schema(resource.spec, "spec"),
            "status": model_schema(resource.status, "status"),
        },
    }


def model_schema(model: type[base.CRDModel], path: str) -> dict[str, Any]:
    """The structural schema of one model; ``path`` names it in error messages."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.get("$defs", {})
    schema = _structural(raw, definitions, path)
    schema.setdefault("description", (model.__doc__ or "").strip())
    return schema


def _structural(node: dict[str, Any], definitions: dict[str, Any], path: str) -> dict[str, Any]:
    node = _inline(node, definitions)
    node = _collapse_nullable(node, definitions, path)
    if any(k in node for k in ("anyOf", "oneOf", "allOf", "not")):
        raise SchemaError(f"{path}: unions cannot be expressed in a structural schema")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            out[key] = {
                name: _described(_structural(sub, definitions, f"{path}.{name}"), f"{path}.{name}")
                for name, sub in value.items()
            }
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = _structural(value, definitions, f"{path}[]")
        elif key == "patternProperties":
            # pydantic's schema for a dict with constrained keys. A CRD has no patternProperties: the value
            # schema becomes additionalProperties, and the keys are checked by the model (or a CEL rule).
            (value_schema,) = value.values()
            out["additionalProperties"] = _structural(value_schema, definitions, f"{path}{{}}")
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _inline(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """Replace a ``$ref`` with the definition, keeping what the referring site says (its description)."""
    if "$ref" not in node:
        return node
    name = node["$ref"].rsplit("/", 1)[-1]
    merged = dict(definitions[name])
    merged.update({k: v for k, v in node.items() if k != "$ref"})
    return merged


def _collapse_nullable(node: dict[str, Any], definitions: dict[str, Any], path: str) -> dict[str, Any]:
    """``anyOf: [X, {type: null}]`` (pydantic's Optional) becomes ``X`` with ``nullable: true``."""
    variants = node.get("anyOf")
    if not variants:
        return node
    concrete = [v for v in variants if v.get("type") != "null"]
    if len(concrete) != 1 or len(concrete) == len(variants):
        raise SchemaError(f"{path}: only Optional[X] unions are supported")
    merged = dict(_inline(concrete[0], definitions))
    merged.update({k: v for k, v in node.items() if k != "anyOf"})
    merged["nullable"] = True
    return merged


def _described(schema: dict[str, Any], path: str) -> dict[str, Any]:
    if not schema.get("description"):
        raise SchemaError(f"{path} has no description: add a docstring under the field")
    return schema


class _NoAliases(yaml.SafeDumper):
    """Writes a rule shared by several fields (one model used twice) out in full each time: a CRD is read
    by people and by tools that do not follow YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(resource: resources.Resource) -> str:
    header = "# Generated by `imagescan crds` from the pydantic models. Do not edit.\n"
    return header + yaml.dump(crd(resource), Dumper=_NoAliases, sort_keys=False, width=100)


def write_all(directory: pathlib.Path) -> list[pathlib.Path]:
    """Write one file per resource; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for resource in resources.ALL:
        target = directory / f"{resource.plural}.{GROUP}.yaml"
        target.write_text(render(resource))
        written.append(target)
    return written
