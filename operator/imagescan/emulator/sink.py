"""Delivers the emulator's EventBridge events to an SQS queue, the way an EventBridge rule with an SQS target does.

The world announces builds and scans from inside request handlers and control calls, some of them under its
lock; a slow or unreachable queue must stall none of them. So ``SqsSink.put`` only enqueues, and one
background thread sends with the real boto3 SQS client (moto's server in tests): one message per event, its
body the envelope's JSON as EventBridge delivers it, up to ten events per SendMessageBatch when several
wait. It counts what it sent and what failed by detail-type, and can wait until nothing is pending.
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import threading
import time
from typing import Any

import boto3.session
import botocore.config
import botocore.exceptions

from imagescan.emulator import events

log = logging.getLogger(__name__)
_BATCH = 10  # SendMessageBatch's limit


class SqsSink:
    """Sends queued events to one SQS queue from a daemon thread."""

    def __init__(self, queue_url: str, *, endpoint_url: str | None = None, region: str = "us-east-1") -> None:
        """``endpoint_url``: an SQS endpoint such as moto's server, called with placeholder credentials;
        without it the default AWS endpoint and credential chain are used."""
        self.queue_url = queue_url
        self.endpoint_url = endpoint_url
        self.region = region
        self._client = _client(endpoint_url, region)
        self._pending: queue.Queue[events.Envelope | None] = queue.Queue()  # None: stop
        self._lock = threading.Condition()
        self._queued = 0
        self._done = 0
        self._sent: collections.Counter[str] = collections.Counter()
        self._failed: collections.Counter[str] = collections.Counter()
        self._thread = threading.Thread(target=self._run, name="imagescan-emulator-events", daemon=True)
        self._thread.start()

    def put(self, envelope: events.Envelope) -> None:
        """Queue one event for delivery; never blocks."""
        with self._lock:
            self._queued += 1
        self._pending.put(envelope)

    def counts(self) -> dict[str, Any]:
        """``{"sent": {detail-type: n}, "failed": {...}, "pending": n, "queueUrl": ...}``."""
        with self._lock:
            return {"sent": dict(self._sent), "failed": dict(self._failed), "pending": self._queued - self._done,
                    "queueUrl": self.queue_url}

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every queued event was sent (or failed); False if some are still pending at ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._done < self._queued:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    def stop(self, timeout: float = 10.0) -> None:
        """Send what is queued, then end the thread."""
        self._pending.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch, stopping = self._take()
            if batch:
                self._send(batch)
            if stopping:
                return

    def _take(self) -> tuple[list[events.Envelope], bool]:
        """The next events to send (waits for the first, then takes what else is already queued)."""
        batch: list[events.Envelope] = []
        item = self._pending.get()
        while item is not None:
            batch.append(item)
            if len(batch) == _BATCH:
                return batch, False
            try:
                item = self._pending.get_nowait()
            except queue.Empty:
                return batch, False
        return batch, True

    def _send(self, batch: list[events.Envelope]) -> None:
        failed: list[events.Envelope] = []
        try:
            if len(batch) == 1:
                self._client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(batch[0]))
            else:
                entries = [{"Id": str(index), "MessageBody": json.dumps(event)} for index, event in enumerate(batch)]
                answer = self._client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
                failed = [batch[int(entry["Id"])] for entry in answer.get("Failed", [])]
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            log.warning("could not send %d event(s) to %s: %s", len(batch), self.queue_url, exc)
            failed = batch
        self._count(batch, failed)

    def _count(self, batch: list[events.Envelope], failed: list[events.Envelope]) -> None:
        failed_ids = {id(event) for event in failed}
        with self._lock:
            for event in batch:
                (self._failed if id(event) in failed_ids else self._sent)[event["detail-type"]] += 1
            self._done += len(batch)
            self._lock.notify_all()


def _client(endpoint_url: str | None, region: str) -> Any:
    config = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 3})
    session = boto3.session.Session()
    if endpoint_url is None:
        return session.client("sqs", region_name=region, config=config)
    return session.client("sqs", region_name=region, endpoint_url=endpoint_url, aws_access_key_id="emulator",
                          aws_secret_access_key="emulator", config=config)
