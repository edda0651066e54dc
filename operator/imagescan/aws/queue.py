"""The events queue: SQS long polling, batch deletes, and the queue's URL taken apart.

EventBridge rules (deploy/aws/) put Image Builder and Inspector events into one SQS queue; the operator reads
it with long polls (one request waits up to ``WAIT_SECONDS`` for messages, so an idle queue costs three requests
a minute) and deletes what it has handled in batches of up to ten, the most SQS takes per call. boto3 blocks:
the intake calls these from a thread of its own, never on the event loop.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from imagescan.aws import errors

WAIT_SECONDS = 20
"""SQS's longest long poll."""
BATCH = 10
"""SQS's largest ReceiveMessage and DeleteMessageBatch."""
VISIBILITY_SECONDS = 60
"""How long a received message stays hidden: enough to match it and wake its objects. One the intake could
not handle comes back after it, and after the queue's maxReceiveCount goes to its dead-letter queue."""
_AWS_QUEUE_URL = re.compile(r"^https://sqs[.-](?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/\d{12}/[\w-]+(?:\.fifo)?$")


@dataclasses.dataclass(frozen=True)
class Message:
    id: str
    receipt: str
    body: str
    receives: int = 1
    """How many times SQS has handed it out (ApproximateReceiveCount)."""


def region_of(queue_url: str) -> str | None:
    """The region in an AWS queue URL (https://sqs.eu-west-1.amazonaws.com/…); None for any other URL (an
    emulator's, or a VPC endpoint's), where the operator's own region applies."""
    found = _AWS_QUEUE_URL.match(queue_url)
    return found["region"] if found is not None else None


def receive(client: Any, queue_url: str, wait: int = WAIT_SECONDS) -> list[Message]:
    """Up to ``BATCH`` messages, waiting up to ``wait`` seconds for the first."""
    try:
        answer = client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=BATCH, WaitTimeSeconds=wait,
            VisibilityTimeout=VISIBILITY_SECONDS, MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
    except Exception as exc:
        raise errors.from_exception(exc) from None
    return [_message(raw) for raw in answer.get("Messages") or []]


def delete(client: Any, queue_url: str, messages: list[Message]) -> list[str]:
    """Delete handled messages in batches; returns the ids SQS did not delete (they come back later, which is
    harmless: handling a message twice refreshes twice at worst)."""
    failed: list[str] = []
    for start in range(0, len(messages), BATCH):
        batch = messages[start:start + BATCH]
        entries = [{"Id": str(n), "ReceiptHandle": m.receipt} for n, m in enumerate(batch)]
        try:
            answer = client.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        except Exception as exc:
            raise errors.from_exception(exc) from None
        failed += [batch[int(f["Id"])].id for f in answer.get("Failed") or []]
    return failed


def attributes(client: Any, queue_url: str) -> dict[str, str]:
    """The queue's attributes: checks at start-up that the queue exists and the operator may read it, and
    whether it has a dead-letter queue (RedrivePolicy)."""
    try:
        answer = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
    except Exception as exc:
        raise errors.from_exception(exc) from None
    return dict(answer.get("Attributes") or {})


def _message(raw: dict[str, Any]) -> Message:
    receives = (raw.get("Attributes") or {}).get("ApproximateReceiveCount") or 1
    return Message(id=str(raw.get("MessageId") or ""), receipt=str(raw.get("ReceiptHandle") or ""),
                   body=str(raw.get("Body") or ""), receives=int(receives))
