"""Push intake's decisions, each with a controllable clock: what an event names, which objects it concerns, and
when the schedule makes them due (a burst is one refresh; back-off, Stalled and the safety net hold)."""

from __future__ import annotations

import json
import pathlib
import random

import pytest

from imagescan.models import imagepipeline as m
from imagescan.reconcile import events, schedule, targets

SAMPLES = pathlib.Path(__file__).resolve().parents[1] / "data" / "events"
ACCOUNT, REGION = "123456789012", "us-east-1"
PIPELINE = f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image-pipeline/web-ami"
IMAGE = f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image/web-ami-recipe/1.0.0/3"


def sample(name: str) -> str:
    return (SAMPLES / f"{name}.json").read_text()


# --- parse ---------------------------------------------------------------------------------------------


def test_each_documented_event_names_what_it_is_about() -> None:
    assert events.parse(sample("imagebuilder-image-state-change")).images == {IMAGE}
    cve = events.parse(sample("imagebuilder-cve-detected"))
    assert IMAGE in cve.images and cve.detail_type == events.CVE_DETECTED
    assert events.parse(sample("cloudtrail-update-image-pipeline")).pipelines == {PIPELINE}
    assert events.parse(sample("inspector2-finding-ec2")).amis == {"ami-0a1b2c3d4e5f60718"}
    scan = events.parse(sample("inspector2-scan-ecr"))
    assert scan.repositories == {"web-api"} and len(scan.digests) == 1
    finding = events.parse(sample("inspector2-finding-ecr"))
    assert finding.repositories == {"web-api"} and scan.digests <= finding.digests
    assert (finding.account, finding.region) == (ACCOUNT, REGION)


@pytest.mark.parametrize(("body", "kind"), [
    ("not json at all", "not-json"),
    ("[1, 2]", "not-an-event"),
    (json.dumps({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "detail": {}}),
     "unknown-type"),
    (json.dumps({"detail-type": events.CVE_DETECTED, "source": "aws.imagebuilder"}), "not-an-event"),
])
def test_unusable_messages_say_why(body: str, kind: str) -> None:
    with pytest.raises(events.Unusable) as raised:
        events.parse(body)
    assert raised.value.kind == kind


def test_deeply_nested_junk_does_not_recurse_forever() -> None:
    detail: dict[str, object] = {}
    inner = detail
    for _ in range(500):
        inner["x"] = {}
        inner = inner["x"]  # type: ignore[assignment]
    body = json.dumps({"detail-type": events.CVE_DETECTED, "source": "aws.imagebuilder", "detail": detail})
    change = events.parse(body)
    assert not (change.pipelines or change.images or change.amis or change.digests or change.repositories)


# --- targets -------------------------------------------------------------------------------------------


def status(pipeline_arn: str, image_arn: str | None = None, *, uris: list[str] | None = None,
           digests: list[str] | None = None, amis: list[str] | None = None) -> m.ImagePipelineStatus:
    _, _, _, region, account, _ = pipeline_arn.split(":", 5)
    data: dict[str, object] = {"pipeline": {"arn": pipeline_arn, "name": pipeline_arn.rsplit("/", 1)[1],
                                            "accountId": account, "region": region, "kind": "AMI"}}
    if image_arn is not None:
        data["findings"] = {"latestImage": {"arn": image_arn, "amis": amis, "containerImages": uris,
                                            "containerImageDigests": digests}}
    return m.ImagePipelineStatus.model_validate(data)


def test_events_find_their_pipelines_by_arn_image_family_ami_and_ecr_image() -> None:
    known = targets.Targets()
    known.note("ami-uid", status(PIPELINE, f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image/web-ami-recipe/1.0.0/2",
                                 amis=["ami-0a1b2c3d4e5f60718"]))
    registry = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    digest = json.loads(sample("inspector2-scan-ecr"))["detail"]["image-digest"]
    known.note("ecr-uid", status(PIPELINE.replace("web-ami", "web-api"),
                                 f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image/web-api-recipe/1.0.0/1",
                                 uris=[f"{registry}/web-api:1.0.0-1"], digests=[f"{registry}/web-api@{digest}"]))
    assert known.match(events.parse(sample("imagebuilder-image-state-change"))) == {"ami-uid"}  # a newer build
    assert known.match(events.parse(sample("cloudtrail-update-image-pipeline"))) == {"ami-uid"}
    assert known.match(events.parse(sample("inspector2-finding-ec2"))) == {"ami-uid"}
    assert known.match(events.parse(sample("inspector2-scan-ecr"))) == {"ecr-uid"}
    known.forget("ami-uid")
    assert known.match(events.parse(sample("imagebuilder-image-state-change"))) == set()


def test_a_build_nobody_knows_concerns_the_pipelines_without_builds_of_its_account_and_region() -> None:
    known = targets.Targets()
    known.note("new", status(PIPELINE.replace("web-ami", "fresh")))
    known.note("other-region", status(PIPELINE.replace(REGION, "eu-west-1").replace("web-ami", "x")))
    assert known.match(events.parse(sample("imagebuilder-image-state-change"))) == {"new"}


def test_a_new_status_replaces_what_the_object_was_known_by() -> None:
    known = targets.Targets()
    known.note("uid", status(PIPELINE, amis=None))
    known.note("uid", status(PIPELINE.replace("web-ami", "renamed")))
    assert known.match(events.parse(sample("cloudtrail-update-image-pipeline"))) == set()


# --- schedule -----------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reconciled(clock: Clock, **kwargs: float | None) -> schedule.Schedule:
    plan = schedule.Schedule(clock=clock, rng=random.Random(1))
    plan.succeeded("uid", resync=600, refresh=900, findings_refreshed=True, **kwargs)  # type: ignore[arg-type]
    return plan


def test_a_burst_of_events_is_one_refresh_once_it_goes_quiet() -> None:
    clock = Clock()
    plan = reconciled(clock)
    for _ in range(5):  # an event every second for 5 s
        assert plan.notify("uid")
        assert not plan.due("uid").sync
        clock.now += 1.0
    clock.now += schedule.EVENT_QUIET - 1.0
    due = plan.due("uid")
    assert due.sync and due.findings and due.notified
    started = plan.now()
    plan.succeeded("uid", resync=600, refresh=900, findings_refreshed=True, started=started)
    clock.now += 60
    assert not plan.due("uid").sync


def test_an_endless_stream_of_events_still_refreshes_within_the_max_wait() -> None:
    clock = Clock()
    plan = reconciled(clock)
    first = clock.now
    while not plan.due("uid").sync:
        plan.notify("uid")
        clock.now += 0.5
    assert clock.now - first <= schedule.EVENT_MAX_WAIT + 0.5


def test_events_during_a_refresh_are_served_by_another_one() -> None:
    clock = Clock()
    plan = reconciled(clock)
    plan.notify("uid")
    clock.now += schedule.EVENT_QUIET
    started = plan.now()
    clock.now += 0.5
    plan.notify("uid")  # arrives while the refresh reads AWS
    clock.now += 0.5
    plan.succeeded("uid", resync=600, refresh=900, findings_refreshed=True, started=started)
    clock.now += schedule.EVENT_QUIET
    assert plan.due("uid").notified


def test_events_never_shorten_a_back_off_or_reread_a_stalled_object() -> None:
    clock = Clock()
    plan = reconciled(clock)
    delay = plan.failed("uid", terminal=False, resync=600)
    plan.notify("uid")
    clock.now += schedule.EVENT_MAX_WAIT
    assert (plan.due("uid").sync) == (delay <= schedule.EVENT_MAX_WAIT)
    clock.now += delay
    assert plan.due("uid").findings  # the retry refreshes what the event reported
    plan.failed("uid", terminal=True, resync=600)
    plan.notify("uid")
    clock.now += 60
    assert not plan.due("uid").sync


def test_an_object_never_reconciled_is_not_notified() -> None:
    assert not schedule.Schedule().notify("unknown")


def on_safety_net(clock: Clock, uid: str = "uid", plan: schedule.Schedule | None = None) -> schedule.Schedule:
    """An object past its first success, the last one scheduled on the 6h safety net."""
    plan = plan or schedule.Schedule(clock=clock, rng=random.Random(1))
    for _ in range(2):
        plan.succeeded(uid, resync=600, refresh=900, findings_refreshed=True, safety_net=6 * 3600.0)
    return plan


def test_an_objects_first_success_is_never_on_the_safety_net() -> None:
    """Events during its first reconcile could not be matched to it: its first period polls."""
    clock = Clock()
    plan = reconciled(clock, safety_net=6 * 3600.0)
    clock.now += 700
    assert plan.due("uid").sync


def test_with_push_healthy_reads_wait_for_the_safety_net_and_come_back_when_intake_fails() -> None:
    clock = Clock()
    plan = on_safety_net(clock)
    clock.now += 3600
    assert not plan.due("uid").sync  # 10m resync stretched to the 6h safety net
    assert len(plan.poll_again()) == 1
    clock.now += 600 * (1 + schedule.JITTER)  # overdue ones are spread over one resync, not all due at once
    due = plan.due("uid")
    assert due.sync and due.findings
    assert plan.poll_again() == []


def test_intake_failing_spreads_the_overdue_and_keeps_back_offs_and_stalled_objects() -> None:
    clock = Clock()
    plan = schedule.Schedule(clock=clock, rng=random.Random(7))
    for n in range(50):
        on_safety_net(clock, f"ok-{n}", plan)
    for uid in ("backing-off", "stalled"):
        on_safety_net(clock, uid, plan)
    clock.now += 3 * 3600  # on the safety net, none due yet; on their own intervals, all long overdue
    plan.failed("backing-off", terminal=False, resync=600)
    plan.failed("stalled", terminal=True, resync=600)
    assert len(plan.poll_again()) == 50
    assert sum(plan.due(f"ok-{n}").sync for n in range(50)) <= 10  # not all on the next tick
    clock.now += 60
    assert not plan.due("stalled").sync
    clock.now += 600 * (1 + schedule.JITTER)
    assert all(plan.due(f"ok-{n}").sync for n in range(50))


def test_the_safety_net_never_shortens_longer_intervals() -> None:
    clock = Clock()
    plan = schedule.Schedule(clock=clock, rng=random.Random(1))
    for _ in range(2):
        delay = plan.succeeded("uid", resync=48 * 3600, refresh=48 * 3600, findings_refreshed=True,
                               safety_net=6 * 3600)
    assert delay > 40 * 3600


def test_an_event_a_refresh_has_already_read_changes_nothing() -> None:
    clock = Clock()
    plan = reconciled(clock)
    plan.notify("uid")
    clock.now += schedule.EVENT_QUIET
    started = plan.now()
    plan.succeeded("uid", resync=600, refresh=900, findings_refreshed=True, started=started)
    clock.now += 5
    # Redelivered: the change it reports happened long before the refresh began.
    assert not plan.notify("uid", age=5 + schedule.EVENT_QUIET + schedule.EVENT_COVERED_AFTER)
    # Recent enough that the refresh may not have seen it yet.
    assert plan.notify("uid", age=6)
