"""The Audit Event poster on its own, with a recording stand-in for the API: aggregation within the window,
the bounded queue, failures logged and never raised, and a webhook answer that never waits for the API.
The real API server and the shipped webhook are in test_webhook.py."""

from __future__ import annotations

import asyncio
import datetime
import logging
import threading
import time
from typing import Any

import pytest
from kubernetes.client import ApiException

from imagescan.admission import events

T0 = datetime.datetime(2025, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)


class Recorder:
    """The two calls, answered from memory; ``block`` holds every call until set (a hanging API server)."""

    def __init__(self, uids: dict[tuple[str, str], str] | None = None) -> None:
        self.uids = uids if uids is not None else {("team", "no-mediums"): "uid-1"}
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.fail: Exception | None = None
        self.block: threading.Event | None = None

    def uid(self, namespace: str, name: str) -> str | None:
        if self.block is not None:
            self.block.wait(10)
        if self.fail is not None:
            raise self.fail
        return self.uids.get((namespace, name))

    def create(self, namespace: str, event: dict[str, Any]) -> None:
        self.created.append((namespace, event))


def _poster(api: Recorder, **kwargs: Any) -> events.Poster:
    ticks = iter(T0 + datetime.timedelta(seconds=i) for i in range(1000))
    return events.Poster(api, instance="imagescan-operator-7d9c-x2", clock=lambda: next(ticks), **kwargs)


async def _settled(api: Recorder, count: int) -> None:
    for _ in range(200):
        if len(api.created) >= count:
            return
        await asyncio.sleep(0.01)


async def test_identical_hits_within_the_window_are_one_event_with_their_count() -> None:
    api = Recorder()
    poster = _poster(api, window=0.05)
    for _ in range(3):
        poster.record("team", "no-mediums", "admitted create of Pod team/web-*: why")
    poster.record("team", "no-mediums", "admitted create of Pod team/other: why")
    await _settled(api, 2)
    await asyncio.sleep(0.1)  # nothing more comes
    assert [(ns, e["message"], e["count"]) for ns, e in api.created] == [
        ("team", "admitted create of Pod team/web-*: why", 3), ("team", "admitted create of Pod team/other: why", 1)]
    event = api.created[0][1]
    assert event["metadata"] == {"generateName": "no-mediums.", "namespace": "team"}
    assert event["involvedObject"] == {"apiVersion": "imagescan.io/v1alpha1", "kind": "FindingsPolicy",
                                       "namespace": "team", "name": "no-mediums", "uid": "uid-1"}
    assert (event["type"], event["reason"]) == ("Warning", "AdmissionAudited")
    assert event["source"] == {"component": "imagescan-operator"}
    assert event["reportingComponent"] == "imagescan-operator"
    assert event["reportingInstance"] == "imagescan-operator-7d9c-x2"
    assert (event["firstTimestamp"], event["lastTimestamp"]) == ("2025-03-01T12:00:00Z", "2025-03-01T12:00:02Z")


async def test_a_hit_after_the_window_opens_the_next_one() -> None:
    api = Recorder()
    poster = _poster(api, window=0.05)
    poster.record("team", "no-mediums", "same")
    await _settled(api, 1)
    poster.record("team", "no-mediums", "same")
    await _settled(api, 2)
    assert [e["count"] for _, e in api.created] == [1, 1]


async def test_the_queue_is_bounded_and_what_it_drops_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    api = Recorder()
    poster = _poster(api, window=0.05, capacity=2)
    for message in ("a", "b", "c", "d", "a"):
        poster.record("team", "no-mediums", message)
    await _settled(api, 2)
    assert sorted((e["message"], e["count"]) for _, e in api.created) == [("a", 2), ("b", 1)]
    assert "dropped 2 Audit hit(s)" in caplog.text


async def test_recording_never_waits_for_the_api() -> None:
    api = Recorder()
    api.block = threading.Event()  # every API call hangs
    poster = _poster(api, window=0.0)
    try:
        poster.record("team", "no-mediums", "first")
        await asyncio.sleep(0.05)  # its post is now stuck in the API
        threads = threading.active_count()
        started = time.monotonic()
        for i in range(100):
            poster.record("team", "no-mediums", f"hit {i}")
        assert time.monotonic() - started < 0.05
        await asyncio.sleep(0.05)
        assert threading.active_count() == threads, "one post at a time, however long the API takes"
    finally:
        api.block.set()
    await _settled(api, 101)


@pytest.mark.parametrize("failure", [ApiException(status=403, reason="Forbidden"), OSError("connection refused")])
async def test_a_failed_post_is_logged_and_the_next_ones_go_on(caplog: pytest.LogCaptureFixture,
                                                               failure: Exception) -> None:
    api = Recorder()
    poster = _poster(api, window=0.01)
    api.fail = failure
    poster.record("team", "no-mediums", "lost")
    for _ in range(100):
        if "could not post" in caplog.text:
            break
        await asyncio.sleep(0.01)
    assert "could not post AdmissionAudited Event(s) on FindingsPolicy team/no-mediums" in caplog.text
    api.fail = None
    poster.record("team", "no-mediums", "posted")
    await _settled(api, 1)
    assert [e["message"] for _, e in api.created] == ["posted"]


async def test_a_policy_gone_meanwhile_gets_no_event(caplog: pytest.LogCaptureFixture) -> None:
    api = Recorder(uids={})
    poster = _poster(api, window=0.0)
    with caplog.at_level(logging.INFO, logger=events.__name__):
        poster.record("team", "no-mediums", "x")
        await poster.close()
    assert api.created == [] and "FindingsPolicy team/no-mediums is gone" in caplog.text


async def test_close_posts_what_is_pending_at_once() -> None:
    api = Recorder()
    poster = _poster(api, window=3600)
    poster.record("team", "no-mediums", "last words")
    await poster.close()
    assert [e["message"] for _, e in api.created] == ["last words"]


async def test_an_overlong_message_is_cut_as_kopf_cuts_its_own() -> None:
    api = Recorder()
    poster = _poster(api)
    poster.record("team", "no-mediums", "x" * 5000)
    await poster.close()
    assert len(api.created[0][1]["message"]) == events.MAX_MESSAGE
