"""Leader election (imagescan.leader) against an in-memory Lease with the API server's resourceVersion rules, and
what a replica that does not hold the Lease registers with kopf (nothing that writes to objects)."""

from __future__ import annotations

import asyncio
import copy
import re
from typing import Any

import pytest
import urllib3

from imagescan import leader, runner
from imagescan.admission import server as admission_server
from imagescan.handlers import runtime


class FakeLeases:
    """One Lease, refused with Conflict when written from a stale read, like the API server's 409."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.failing: Exception | None = None

    def get(self) -> dict[str, Any] | None:
        if self.failing is not None:
            raise self.failing
        return copy.deepcopy(self.lease)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.lease is not None:
            raise leader.Conflict("already exists")
        return self._store(body)

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise leader.Conflict("changed since read")
        return self._store(body)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    @property
    def holder(self) -> str:
        return str(((self.lease or {}).get("spec") or {}).get("holderIdentity", ""))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _elector(identity: str, leases: FakeLeases, clock: Clock | None = None, **timings: float) -> leader.Elector:
    """With a clock of the test's own, else the real one (for the loops, on short timings)."""
    settings = leader.Settings(identity=identity, **timings)
    return leader.Elector(settings, leases, clock=clock) if clock else leader.Elector(settings, leases)


def test_the_first_candidate_creates_the_lease_and_the_second_waits() -> None:
    leases = FakeLeases()
    assert _elector("a", leases)._try_acquire_or_renew()
    assert leases.holder == "a"
    spec = leases.lease["spec"] if leases.lease else {}
    assert spec["leaseDurationSeconds"] == 15 and spec["acquireTime"] == spec["renewTime"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", spec["renewTime"])  # MicroTime
    assert not _elector("b", leases)._try_acquire_or_renew()
    assert leases.holder == "a"


def test_another_takes_over_only_after_seeing_the_record_unchanged_for_the_lease_duration() -> None:
    leases, clock = FakeLeases(), Clock()
    a = _elector("a", leases)
    b = _elector("b", leases, clock)
    assert a._try_acquire_or_renew()
    assert not b._try_acquire_or_renew()
    clock.now += 14.9
    assert a._try_acquire_or_renew()  # a renewal restarts b's wait, whatever the clocks say
    assert not b._try_acquire_or_renew()
    clock.now += 14.9
    assert not b._try_acquire_or_renew()
    clock.now += 0.2
    assert b._try_acquire_or_renew()
    assert leases.holder == "b"
    spec = leases.lease["spec"] if leases.lease else {}
    assert spec["leaseTransitions"] == 1


def test_of_two_candidates_racing_from_the_same_read_one_wins() -> None:
    leases = FakeLeases()
    assert _elector("a", leases)._try_acquire_or_renew()
    assert leases.lease is not None
    leases.lease["spec"]["holderIdentity"] = ""  # released: both may take it at once
    stale = leases.get()
    b, c = _elector("b", leases), _elector("c", leases)
    assert b._try_acquire_or_renew()
    leases.get = lambda: copy.deepcopy(stale)  # type: ignore[method-assign]  # c read before b wrote
    assert not asyncio.run(c._attempt())
    assert leases.holder == "b"


async def test_release_hands_over_at_the_next_retry() -> None:
    leases = FakeLeases()
    a = _elector("a", leases)
    await a.acquire()
    b = _elector("b", leases)
    assert not await b._attempt()
    await a.release()
    assert leases.holder == "" and leases.lease is not None
    assert leases.lease["spec"]["leaseDurationSeconds"] == 1
    assert await b._attempt()  # no waiting for the lease duration
    assert leases.holder == "b"
    await a.release()  # not ours any more: left alone
    assert leases.holder == "b"


@pytest.mark.parametrize("failure", [
    OSError("connection refused"),
    # What urllib3 raises when kube-apiserver drops connections under a create storm: not an OSError.
    urllib3.exceptions.MaxRetryError(None, "/apis/coordination.k8s.io/v1/leases", "too many 429s"),
], ids=["oserror", "maxretryerror"])
async def test_a_holder_that_cannot_renew_gives_up_at_the_renew_deadline(failure: Exception) -> None:
    leases = FakeLeases()
    a = _elector("a", leases, lease_duration=0.6, renew_deadline=0.4, retry_period=0.1)
    await a.acquire()
    leases.failing = failure
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(leader.LeadershipLost, match="could not renew"):
        await a.hold()
    assert 0.4 <= loop.time() - started < 0.6  # before anyone else may take over
    assert not a.leading


async def test_a_holder_that_finds_another_holder_gives_up_at_once() -> None:
    leases = FakeLeases()
    a = _elector("a", leases, lease_duration=0.6, renew_deadline=0.4, retry_period=0.1)
    await a.acquire()
    assert leases.lease is not None
    leases.lease["spec"]["holderIdentity"] = "b"
    leases.version += 1
    leases.lease["metadata"]["resourceVersion"] = str(leases.version)
    with pytest.raises(leader.LeadershipLost, match="held by b"):
        await asyncio.wait_for(a.hold(), timeout=0.3)


async def test_a_holder_renews_every_retry_period() -> None:
    leases = FakeLeases()
    a = _elector("a", leases, lease_duration=0.6, renew_deadline=0.4, retry_period=0.1)
    await a.acquire()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(a.hold(), timeout=0.55)
    assert leases.version >= 5 and leases.holder == "a"


@pytest.mark.parametrize("timings", [
    {"lease_duration": 10, "renew_deadline": 10},
    {"renew_deadline": 2, "retry_period": 2},
    {"retry_period": 0},
])
def test_timings_must_let_the_holder_stop_before_others_take_over(timings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="lease duration > renew deadline"):
        leader.Settings(identity="a", **timings)


def test_identity_is_the_pod_name_else_unique(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "imagescan-operator-7d9c-x2")
    assert leader.identity_from_environment() == "imagescan-operator-7d9c-x2"
    monkeypatch.delenv("POD_NAME")
    assert leader.identity_from_environment() != leader.identity_from_environment()


def test_the_admission_operator_registers_nothing_that_writes_to_objects() -> None:
    """No create/update/resume/delete handler (kopf's annotations), no timer or daemon (finalizers)."""
    config = runtime.Config(webhook=admission_server.Settings(port=9443))
    built = runner.admission_registry(config)
    assert not built._changing.get_all_handlers()
    assert not built._spawning.get_all_handlers()
    assert {h.id for h in built._indexing.get_all_handlers()} >= {"pipelines_by_namespace", "policies_by_namespace"}
    assert built._webhooks.get_all_handlers()
    full = runner.registry(config)
    assert full._changing.get_all_handlers() and full._spawning.get_all_handlers()


async def test_race_names_the_first_to_finish_raises_its_error_and_cancels_the_others() -> None:
    slow = asyncio.ensure_future(asyncio.sleep(10))
    assert await runner._race(slow=slow, fast=asyncio.sleep(0)) == "fast"
    await asyncio.sleep(0)
    assert slow.cancelled()

    async def lose() -> None:
        raise leader.LeadershipLost("gone")

    with pytest.raises(leader.LeadershipLost):
        await runner._race(lost=lose(), stop=asyncio.sleep(10))
