"""Push intake: read AWS's events from the SQS queue and notify the ImagePipelines they concern.

One task per operator (the Lease holder's under leader election), started with kopf and stopped with it. It
long-polls the queue in a thread of its own (a poll blocks up to 20 s; the AWS worker pool stays free for
reconciles), maps each event to objects (``runtime.targets``, no AWS call), notifies them (``schedule.notify``:
the burst for one object ends in one refresh, in its own timer), then deletes the batch.

- An unusable message (not JSON, not an event, a type we do not use) is logged once per kind and deleted:
  sending it again would not make it usable.
- One whose handling raised is not deleted: SQS hands it out again after the visibility timeout, and the
  queue's redrive policy moves it to the dead-letter queue after maxReceiveCount (deploy/aws/).
- The queue failing (unreachable, access denied, gone) sets ``runtime.push_healthy`` false, brings every
  object back to polling on its own intervals (``schedule.poll_again``), logs once, and retries with
  jittered back-off (2 s doubling to 5 min) until it answers again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import kopf

from imagescan.aws import errors, queue
from imagescan.handlers import runtime as runtime_
from imagescan.reconcile import events, schedule

logger = logging.getLogger(__name__)
TASK = "events_intake"
DRAIN_SECONDS = queue.VISIBILITY_SECONDS / 3
"""A poll that returns a full batch keeps reading (without waiting) for up to this long before it notifies: a
backlog (a burst of events, or what queued while the operator was away) is one notification per object, not
one per batch. A third of the messages' visibility timeout, leaving the rest for handling and deleting them
before any returns."""


def register(registry: kopf.OperatorRegistry) -> None:
    """Start with kopf; lifecycle.close stops it (``stop``) before the AWS clients it uses are closed."""
    kopf.on.startup(registry=registry, id="events-intake")(start)


async def start(memo: kopf.Memo, **_: Any) -> None:
    shared: runtime_.Runtime = memo.runtime
    if shared.config.events is None:
        return
    intake = Intake(shared, shared.config.events.queue_url)
    memo[TASK] = asyncio.create_task(intake.run(), name=TASK)


async def stop(memo: kopf.Memo) -> None:
    task: asyncio.Task[None] | None = memo.get(TASK)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class Intake:
    def __init__(self, shared: runtime_.Runtime, queue_url: str, *, wait: int = queue.WAIT_SECONDS,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self.shared = shared
        self.queue_url = queue_url
        self.wait = wait
        self._clock = clock
        self._rng = rng or random.Random()
        self._client = shared.clients.sqs(queue.region_of(queue_url))
        # Long polls block for up to ``wait`` seconds: a thread of their own, never the AWS workers'.
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagescan-events")
        self._failures = 0
        self._logged_kinds: set[str] = set()

    async def run(self) -> None:
        try:
            await self._check_queue()
            while True:
                try:
                    await self.poll_once()
                except Exception as exc:  # a bug must not end intake for the operator's lifetime
                    logger.exception("events intake failed unexpectedly; retrying")
                    await self._back_off(errors.AwsError(f"{type(exc).__name__}: {exc}"))
        finally:
            self._thread.shutdown(wait=False, cancel_futures=True)

    async def poll_once(self) -> int:
        """One long poll, draining a backlog, and what follows; returns how many messages were handled.
        Failures back off here."""
        try:
            messages = await self._drain()
        except errors.AwsError as exc:
            await self._back_off(exc)
            return 0
        handled = [message for message in messages if self._handle(message)]
        if handled:
            try:
                failed = await self._call(queue.delete, self._client, self.queue_url, handled)
            except errors.AwsError as exc:  # e.g. no sqs:DeleteMessage: not healthy, or the back-off never grows
                await self._back_off(exc)
                return len(handled)
            if failed:
                logger.warning("events queue: %d message(s) not deleted; they will be handled again", len(failed))
        self._healthy()
        return len(handled)

    async def _drain(self) -> list[queue.Message]:
        """What the queue holds now: one long poll, then, after a full batch, more at once until none come."""
        messages: list[queue.Message] = await self._call(queue.receive, self._client, self.queue_url, self.wait)
        started = time.monotonic()
        batch = messages
        while len(batch) == queue.BATCH or (batch and len(messages) > queue.BATCH):
            if time.monotonic() - started > DRAIN_SECONDS:
                break
            batch = await self._call(queue.receive, self._client, self.queue_url, 0)
            messages += batch
        if len(messages) > queue.BATCH:
            logger.info("events queue: drained %d messages in %.1fs", len(messages), time.monotonic() - started)
        return messages

    def _handle(self, message: queue.Message) -> bool:
        """Notify the objects the message concerns; True when it may be deleted."""
        metrics = self.shared.metrics
        try:
            change = events.parse(message.body)
        except events.Unusable as exc:
            metrics.events_received.labels(type=exc.kind, result="unusable").inc()
            if exc.kind not in self._logged_kinds:  # once per kind: a flood of junk is one line, not a flood
                self._logged_kinds.add(exc.kind)
                logger.warning("events queue: deleted message %s: %s (further ones of this kind: metric "
                               "imagescan_events{result=\"unusable\"} only)", message.id, exc)
            return True
        lag = self._lag(change.time)
        try:
            uids = self.shared.targets.match(change)
            notified = sum(1 for uid in uids if self.shared.notify(uid, lag or 0.0))
        except Exception:
            logger.exception("events queue: could not handle message %s (received %d time(s)); left in the queue",
                             message.id, message.receives)
            return False
        metrics.events_received.labels(type=change.detail_type, result="matched" if uids else "unmatched").inc()
        metrics.events_notified.inc(notified)
        if lag is not None:
            metrics.events_lag_seconds.observe(lag)
        logger.debug("events queue: %s %s -> %d object(s)", change.detail_type, message.id, len(uids))
        return True

    async def _check_queue(self) -> None:
        """Read the queue's attributes once: a wrong URL or a missing permission shows at start, and so does
        a queue without a dead-letter queue (then a message that keeps failing returns until it expires)."""
        while True:
            try:
                attributes = await self._call(queue.attributes, self._client, self.queue_url)
            except errors.AwsError as exc:
                await self._back_off(exc)
                continue
            if "RedrivePolicy" not in attributes:
                logger.warning("events queue %s has no dead-letter queue (RedrivePolicy): a message the operator "
                               "cannot handle returns until the queue's retention period ends", self.queue_url)
            logger.info("events queue %s: reading (safety-net interval %.0fs while it answers)", self.queue_url,
                        self.shared.config.events.safety_net if self.shared.config.events else 0)
            self._healthy()  # it answered: the resume reconciles at start may already use the safety net
            return

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _healthy(self) -> None:
        if not self.shared.push_healthy and self._failures:
            logger.info("events queue answers again after %d failed attempt(s)", self._failures)
        self._failures = 0
        self.shared.push_healthy = True
        self.shared.metrics.events_queue_up.labels(queue=self.queue_url).set(1)

    async def _back_off(self, exc: errors.AwsError) -> None:
        self._failures += 1
        if self.shared.push_healthy or self._failures == 1:
            moved = self.shared.poll_again()
            logger.warning("events queue %s failed: %s; polling AWS on each object's own intervals (%d brought "
                           "forward) until it answers", self.queue_url, exc.message, moved)
        self.shared.push_healthy = False
        self.shared.metrics.events_queue_up.labels(queue=self.queue_url).set(0)
        await asyncio.sleep(schedule.backoff(self._failures, schedule.BACKOFF_CAP, self._rng))

    def _lag(self, stamped: str) -> float | None:
        try:
            at = datetime.datetime.fromisoformat(stamped.replace("Z", "+00:00"))
        except ValueError:
            return None
        return max(0.0, self._clock() - at.timestamp())
