"""The operator's log output: text for people, one JSON object per line for log pipelines (``--log-format``).

Both formats cover every logger in the process: the operator's, kopf's and aiohttp's. kopf's per-object
logger adapters put the object's reference on each record (``k8s_ref``); the JSON lines carry its kind,
namespace and name as fields of their own, so a log query can select one object.

kopf logs every successful handler and timer run at INFO: with a timer per object, that is a line per
object per tick. ``Quiet`` demotes those to DEBUG; the handlers log one INFO line per reconcile that did
something instead (``reconcile_line``). kopf's webhook server keeps aiohttp's access log, a line at INFO per
admission request: ``QuietAccess`` demotes those too (a refusal or an Audit hit has its own INFO line).
"""

from __future__ import annotations

import copy
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

from pythonjsonlogger import core as jsonlogger_core
from pythonjsonlogger import json as jsonlogger

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
# Record attributes that are kopf's plumbing, not information: the settings object, the posting switch.
_KOPF_PLUMBING = ("settings", "k8s_skip", "k8s_ref")
ACCESS_LOGGER = "aiohttp.access"  # aiohttp.log.access_logger, which kopf's webhook server does not turn off
# kopf's "Handler 'resume' succeeded.", "Timer 'resync' succeeded.", "Resuming is processed: 1 succeeded; 0 failed."
_KOPF_SUCCESS = re.compile(r"^(\w+ '[^']*' succeeded\.|\w+ is processed: \d+ succeeded; 0 failed\.)$")


class JsonFormatter(jsonlogger.JsonFormatter):
    """timestamp (ISO 8601, UTC), level, logger, message; kind, namespace and name of the object a record is
    about; the extra fields a log call passes (``action``, ``aws_calls``, ``duration_seconds``...)."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level", "name": "logger"},
            timestamp=True, reserved_attrs=[*jsonlogger_core.RESERVED_ATTRS, *_KOPF_PLUMBING],
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        ref: Mapping[str, Any] = getattr(record, "k8s_ref", None) or {}
        for key in ("kind", "namespace", "name"):
            if ref.get(key):
                log_data[key] = ref[key]


class TextFormatter(logging.Formatter):
    """The classic line, with ``[namespace/name]`` before the message of a record about an object."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        ref: Mapping[str, Any] = getattr(record, "k8s_ref", None) or {}
        if ref.get("name"):
            where = f"{ref['namespace']}/{ref['name']}" if ref.get("namespace") else ref["name"]
            record = copy.copy(record)  # other handlers see the record as it was logged
            record.msg = f"[{where}] {record.msg}"
        return super().format(record)


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {log_format!r}: one of {', '.join(FORMATS)}")


def configure(log_format: str = "text", *, verbose: bool = False) -> None:
    """One handler on the root logger, to stderr, in the chosen format; every other logger propagates to it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    quiet()


class Quiet(logging.Filter):
    """kopf's per-run success lines become DEBUG: dropped unless debug logging is on, then shown as DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not _KOPF_SUCCESS.match(record.getMessage()):
            return True
        return _demote(record)


class QuietAccess(logging.Filter):
    """aiohttp's access lines (the webhook's requests) become DEBUG, as ``Quiet`` does."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno != logging.INFO or _demote(record)


def _demote(record: logging.LogRecord) -> bool:
    """Make an INFO record DEBUG; keep it only if its logger shows DEBUG (the root's level, as configured)."""
    record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
    return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def quiet() -> None:
    """Install ``Quiet`` on kopf's per-object logger and ``QuietAccess`` on aiohttp's access log (once each;
    the tests start many operators in a process)."""
    for name, kind in (("kopf.objects", Quiet), (ACCESS_LOGGER, QuietAccess)):
        target = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in target.filters):
            target.addFilter(kind())


def reconcile_line(trigger: str, actions: list[str], calls: int, seconds: float) -> tuple[str, dict[str, Any]]:
    """The message and the structured fields of a reconcile's one log line. What it did comes last, so a
    failure's "next attempt in 16s" ends the line."""
    action = "; ".join(actions) or "no change"
    message = f"{trigger} ({calls} AWS call{'s' if calls != 1 else ''}, {seconds:.2f}s): {action}"
    return message, {"trigger": trigger, "action": action, "aws_calls": calls, "duration_seconds": round(seconds, 3)}
