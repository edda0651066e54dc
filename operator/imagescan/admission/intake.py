"""Reading an AdmissionReview defensively, before kopf sees it.

Whatever arrives gets an answer the API server can use: a request this module cannot even read as an
AdmissionReview is an HTTP 400 with the reason; one that names its uid gets an AdmissionReview refusing it
(``allowed: false``) with the reason. A refusal rather than an error matters with ``failurePolicy: Ignore``:
the API server admits whatever the webhook fails on, so an error would let the object in unjudged.

* Size: ``MAX_BODY`` is above the largest real review (see there); beyond it the request is refused with
  code 413, its uid read from the head of the body.
* Encoding and syntax: not UTF-8, not JSON, or numbers Python will not convert: refused (code 400), the uid
  again read from the head, where the API server writes it.
* Depth: kopf compares old and new objects recursively, so a review nested deeper than ``MAX_DEPTH`` is
  refused instead of exhausting the recursion limit.
* Shape: the fields kopf and the handlers read must have their Kubernetes types.
* Operations: only CREATE and UPDATE are judged; DELETE and CONNECT are allowed without judging (the object
  of a DELETE is the one being removed; a CONNECT carries exec/attach options, not an object).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any, cast

REVIEW_VERSION = "admission.k8s.io/v1"
MIB = 1024 * 1024
# The API server takes request bodies up to 3 MiB, and an UPDATE review carries the object and the old
# object: 6 MiB plus the envelope. The API server's JSON encoder writes <, > and & as six-byte \u003c
# escapes, so the same objects can grow well beyond that on the wire: 16 MiB leaves room for it.
MAX_BODY = 16 * MIB
MAX_DRAIN = 4 * MAX_BODY  # read (and drop) this much of an oversized body before answering anyway
# Kubernetes objects nest about 20 levels deep at most (a CronJob's affinity terms); Python's recursion
# limit is 1000 and kopf's diff uses a few frames per level.
MAX_DEPTH = 100
JUDGED = frozenset({"CREATE", "UPDATE"})
NOT_JUDGED = frozenset({"DELETE", "CONNECT"})
# The API server writes the request's uid first ({"kind":..,"apiVersion":..,"request":{"uid":"..."), so it
# can be found in a body that cannot be parsed. Only where it comes first: never an object's uid.
_HEAD = 4096
_UID = re.compile(rb'"request"\s*:\s*\{\s*"uid"\s*:\s*"([\x21\x23-\x5b\x5d-\x7e]{1,128})"')
_METADATA_STRINGS = ("name", "generateName", "namespace", "uid")
_METADATA_MAPS = ("labels", "annotations")

Review = dict[str, Any]
Resource = tuple[str, str, str]


class Unreadable(Exception):
    """The body is not an AdmissionReview this module can parse; ``uid`` when one could be found anyway."""

    def __init__(self, reason: str, uid: str | None, code: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.uid = uid
        self.code = code


def parse(body: bytes, *, oversized: bool = False) -> Review:
    """The AdmissionReview in ``body``, or Unreadable saying why not."""
    if oversized:
        raise Unreadable(f"the AdmissionReview is larger than {MAX_BODY // MIB} MiB", uid_in(body), 413)
    try:
        review: Any = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Unreadable(f"the body is not UTF-8 ({exc.reason} at byte {exc.start})", uid_in(body)) from None
    except RecursionError:
        raise Unreadable("the JSON is nested too deeply", uid_in(body)) from None
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python converts
        raise Unreadable(f"not JSON: {exc}", uid_in(body)) from None
    problem = envelope_problem(review)
    if problem is not None:
        raise Unreadable(f"not an {REVIEW_VERSION} AdmissionReview: {problem}", None)
    if nested_deeper_than(review, MAX_DEPTH):
        raise Unreadable(f"the AdmissionReview is nested deeper than {MAX_DEPTH} levels", uid_of(review))
    return cast(Review, review)


def screen(review: Review, reviewed: Collection[Resource] = ()) -> Review | None:
    """The answer to a review that must not reach the handlers, or None to judge it.

    ``reviewed``: the (group, version, plural) the handlers judge; anything else is allowed unjudged (the
    webhook configuration should not send it here). Empty: everything goes to the handlers.
    """
    request = review["request"]
    problem = request_problem(request)
    if problem is not None:
        return refusal(uid_of(review), 400, f"malformed AdmissionReview: {problem}")
    resource = request["resource"]
    if request["operation"] in NOT_JUDGED or (
            reviewed and (resource["group"], resource["version"], resource["resource"]) not in reviewed):
        return allowance(uid_of(review))
    _default_namespace(request)
    return None


def envelope_problem(review: Any) -> str | None:
    """Why the document is not an AdmissionReview that can be answered at all, or None."""
    if not isinstance(review, dict):
        return "the body is not a JSON object"
    if review.get("apiVersion") != REVIEW_VERSION or review.get("kind") != "AdmissionReview":
        return f"apiVersion/kind are {_short(review.get('apiVersion'))}/{_short(review.get('kind'))}"
    request = review.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str) or not request["uid"]:
        return "request.uid is missing"
    return None


def request_problem(request: dict[str, Any]) -> str | None:
    """What kopf and the handlers need and the request lacks or has with the wrong type, or None."""
    resource = request.get("resource")
    if not isinstance(resource, dict) or not all(isinstance(resource.get(k), str) for k in
                                                 ("group", "version", "resource")):
        return "request.resource needs group, version and resource"
    operation = request.get("operation")
    if operation not in JUDGED | NOT_JUDGED:
        return f"request.operation is {_short(operation)}, not CREATE, UPDATE, DELETE or CONNECT"
    if not isinstance(request.get("userInfo"), dict):
        return "request.userInfo is missing"
    if operation in NOT_JUDGED:
        return None  # allowed without reading the objects
    new, old = request.get("object"), request.get("oldObject")
    if not isinstance(new, dict):
        return "request.object is missing"
    if old is not None and not isinstance(old, dict):
        return "request.object and request.oldObject must be objects"
    return _object_problem(new, "request.object") or (_object_problem(old, "request.oldObject") if old else None)


def _object_problem(obj: dict[str, Any], where: str) -> str | None:
    """kopf reads metadata (name, namespace, uid, labels, annotations) of every object it handles."""
    for field in ("apiVersion", "kind"):
        if field in obj and not isinstance(obj[field], str):
            return f"{where}.{field} must be a string"
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict):
        return f"{where}.metadata must be an object"
    for field in _METADATA_STRINGS:
        if metadata.get(field) is not None and not isinstance(metadata[field], str):
            return f"{where}.metadata.{field} must be a string"
    for field in _METADATA_MAPS:
        value = metadata.get(field)
        if value is not None and not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
            return f"{where}.metadata.{field} must map strings to strings"
    return None


def nested_deeper_than(document: Any, limit: int) -> bool:
    """Without recursion: the document may be exactly what recursion cannot handle."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def uid_in(body: bytes) -> str | None:
    """The request uid at the head of a body that does not parse, if the API server put it there."""
    found = _UID.search(body[:_HEAD])
    return found.group(1).decode("ascii") if found else None


def uid_of(review: Review) -> str:
    return str(review["request"]["uid"])


def refusal(uid: str, code: int, message: str) -> Review:
    return _answer({"uid": uid, "allowed": False, "status": {"code": code, "message": message}})


def allowance(uid: str) -> Review:
    return _answer({"uid": uid, "allowed": True})


def _answer(response: dict[str, Any]) -> Review:
    return {"apiVersion": REVIEW_VERSION, "kind": "AdmissionReview", "response": response}


def _short(value: Any) -> str:
    """Echo a bad value in a reason, but not a megabyte of it."""
    text = repr(value)
    return text if len(text) <= 64 else f"{text[:61]}..."


def _default_namespace(request: dict[str, Any]) -> None:
    """The object in a CREATE may leave its namespace to the URL; the request always names it."""
    namespace = request.get("namespace")
    for field in ("object", "oldObject"):
        obj = request.get(field)
        if isinstance(namespace, str) and namespace and isinstance(obj, dict):
            metadata = obj.setdefault("metadata", {})
            if not metadata.get("namespace"):
                metadata["namespace"] = namespace
