"""Log output: JSON lines with the object a record is about, the text line with it too, kopf's per-run success
lines and aiohttp's access lines (one per admission request) kept out of INFO, and the reconcile's one line."""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
from collections.abc import Iterator
from typing import Any

import aiohttp.web
import pytest
from aiohttp import test_utils, web_log

from imagescan import logs

REF = {"apiVersion": "imagescan.io/v1alpha1", "kind": "ImagePipeline", "name": "web", "namespace": "team", "uid": "u"}


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, logging.Handler, io.StringIO]]:
    """A logger of its own writing to a buffer, as the root handler ``logs.configure`` installs would."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("imagescan.test-logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, handler, out
    finally:
        logger.removeHandler(handler)


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_has_the_fields_and_the_object_and_nothing_of_kopfs_plumbing(captured: Any) -> None:
    logger, handler, out = captured
    handler.setFormatter(logs.formatter("json"))
    # What kopf's object logger adapter puts on a record, plus a reconcile's fields.
    logger.info("created (%d AWS calls, 0.10s): turned image scanning on", 3,
                extra={"k8s_ref": REF, "k8s_skip": False, "settings": object(), "aws_calls": 3})
    (line,) = _lines(out)
    assert line["level"] == "INFO" and line["logger"] == "imagescan.test-logs"
    assert line["message"] == "created (3 AWS calls, 0.10s): turned image scanning on"
    assert line["timestamp"].endswith("+00:00")  # ISO 8601, UTC
    assert (line["kind"], line["namespace"], line["name"]) == ("ImagePipeline", "team", "web")
    assert line["aws_calls"] == 3
    assert not {"k8s_ref", "k8s_skip", "settings"} & set(line)


def test_json_of_a_record_about_no_object_and_of_an_exception(captured: Any) -> None:
    logger, handler, out = captured
    handler.setFormatter(logs.formatter("json"))
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("could not judge")
    (line,) = _lines(out)
    assert line["level"] == "ERROR" and "ValueError: boom" in line["exc_info"]
    assert "kind" not in line and "name" not in line


def test_a_cluster_scoped_object_has_no_namespace(captured: Any) -> None:
    logger, handler, out = captured
    handler.setFormatter(logs.formatter("json"))
    logger.info("x", extra={"k8s_ref": {**REF, "kind": "InspectorActivation", "namespace": None}})
    (line,) = _lines(out)
    assert line["kind"] == "InspectorActivation" and "namespace" not in line


def test_text_puts_the_object_before_the_message(captured: Any) -> None:
    logger, handler, out = captured
    handler.setFormatter(logs.formatter("text"))
    logger.info("resumed: no change", extra={"k8s_ref": REF})
    logger.info("plain")
    first, second = out.getvalue().splitlines()
    assert first.endswith(" INFO imagescan.test-logs: [team/web] resumed: no change")
    assert second.endswith(" INFO imagescan.test-logs: plain")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="json"):
        logs.formatter("yaml")


@pytest.mark.parametrize("message", [
    "Timer 'resync' succeeded.", "Handler 'resume' succeeded.", "Resuming is processed: 1 succeeded; 0 failed.",
    "Creation is processed: 2 succeeded; 0 failed.",
])
@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
def test_kopfs_success_lines_are_debug(message: str, level: int) -> None:
    logger = logging.getLogger("imagescan.test-logs.quiet")
    logger.setLevel(level)
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, message, (), None)
    kept = logs.Quiet().filter(record)
    assert kept == (level == logging.DEBUG)  # shown only with debug logging on, then as DEBUG
    assert record.levelname == "DEBUG"


@pytest.mark.parametrize("message", [
    "Handler 'resync' failed temporarily: boom", "Updating is processed: 0 succeeded; 1 failed.",
    "created (1 AWS call, 0.01s): turned image scanning on",
])
def test_other_lines_keep_their_level(message: str) -> None:
    record = logging.getLogger("kopf.objects").makeRecord("kopf.objects", logging.INFO, __file__, 1, message, (), None)
    assert logs.Quiet().filter(record) and record.levelno == logging.INFO


def test_quiet_is_installed_once() -> None:
    logs.quiet()
    logs.quiet()
    assert sum(isinstance(f, logs.Quiet) for f in logging.getLogger("kopf.objects").filters) == 1
    assert sum(isinstance(f, logs.QuietAccess) for f in logging.getLogger(logs.ACCESS_LOGGER).filters) == 1


@pytest.fixture
def access_log() -> Iterator[tuple[logging.Logger, list[logging.LogRecord]]]:
    """aiohttp's access logger, as ``logs.quiet`` leaves it, with what reaches its handlers collected."""
    logs.quiet()
    access = logging.getLogger(logs.ACCESS_LOGGER)
    handler = logging.handlers.BufferingHandler(capacity=100)
    kept = handler.buffer
    level, propagate = access.level, access.propagate
    access.addHandler(handler)
    access.propagate = False
    try:
        yield access, kept
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
        access.propagate = propagate


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
def test_aiohttps_access_line_of_each_webhook_request_is_debug(access_log: Any, level: int) -> None:
    """What kopf's webhook server logs per request (aiohttp's own access logger, at INFO) is shown only with
    debug logging on, then as DEBUG."""
    access, kept = access_log
    access.setLevel(level)
    request = test_utils.make_mocked_request("POST", "/validate")
    web_log.AccessLogger(access).log(request, aiohttp.web.Response(status=200), 0.004)
    if level == logging.DEBUG:
        (record,) = kept
        assert record.levelname == "DEBUG" and '"POST /validate HTTP/1.1" 200' in record.getMessage()
    else:
        assert kept == []


def test_aiohttps_other_lines_keep_their_level(access_log: Any) -> None:
    access, kept = access_log
    access.setLevel(logging.INFO)
    access.error("Error in logging")
    (record,) = kept
    assert record.levelname == "ERROR"


def test_the_reconcile_line_ends_with_what_it_did() -> None:
    failed = "boom (Recoverable Throttled); next attempt in 16s"
    message, fields = logs.reconcile_line("resync", ["findings refreshed", failed], 1, 0.1234)
    assert message == f"resync (1 AWS call, 0.12s): findings refreshed; {failed}"
    assert fields == {"trigger": "resync", "action": f"findings refreshed; {failed}", "aws_calls": 1,
                      "duration_seconds": 0.123}
    assert logs.reconcile_line("resync", [], 0, 0.0)[0] == "resync (0 AWS calls, 0.00s): no change"
