"""Amazon SQS standard queues, a small faithful subset, so push intake can run with no moto and no AWS.

The operator reads its events from an SQS queue (``imagescan.aws.queue``) and the emulator's own event sink
(``sink``) writes to one. With this module the emulator's endpoint is that queue too: ``imagescan sandbox``
and tests need nothing else. Served over botocore's JSON protocol (``AmazonSQS.<Operation>``), like ECR.

What is emulated, as SQS documents it: queues per account and region, idempotent CreateQueue, send (single and
batch, with the body's MD5 and message attributes' MD5 as SQS computes them), receive with long polling (a
ReceiveMessage waits on a condition and returns as soon as a message is there, up to ``WaitTimeSeconds``),
visibility timeouts (a received message is hidden, then comes back), ApproximateReceiveCount, DelaySeconds,
retention, redrive to a dead-letter queue after ``maxReceiveCount`` receives, delete (single and batch, with
per-entry failures), purge and delete of queues. Errors carry the modeled codes plus the ``x-amzn-query-error``
header SQS sends, which botocore reads to raise ``client.exceptions.QueueDoesNotExist`` and friends while
``Error.Code`` shows the legacy Query code (``AWS.SimpleQueueService.NonExistentQueue``), as with real SQS.
Not emulated: FIFO queues, ChangeMessageVisibility, ListQueues, permissions, tags beyond storing them, and the
60-second ban on re-creating a just-deleted queue.

All state lives in one ``Queues`` (``world.World.sqs``) behind one condition variable; a waiting long poll
releases it, so it blocks nothing but itself.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import re
import struct
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from imagescan.emulator import errors, identity

if TYPE_CHECKING:
    from imagescan.emulator import world

# The legacy Query protocol's code for each modeled error, sent in ``x-amzn-query-error`` (codes absent here
# are the same in both).
QUERY_CODES = {
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
    "QueueNameExists": "QueueAlreadyExists",
    "QueueDeletedRecently": "AWS.SimpleQueueService.QueueDeletedRecently",
    "PurgeQueueInProgress": "AWS.SimpleQueueService.PurgeQueueInProgress",
    "EmptyBatchRequest": "AWS.SimpleQueueService.EmptyBatchRequest",
    "BatchEntryIdsNotDistinct": "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "InvalidBatchEntryId": "AWS.SimpleQueueService.InvalidBatchEntryId",
    "BatchRequestTooLong": "AWS.SimpleQueueService.BatchRequestTooLong",
    "UnsupportedOperation": "AWS.SimpleQueueService.UnsupportedOperation",
    "MessageNotInflight": "AWS.SimpleQueueService.MessageNotInflight",
}
INVALID_PARAMETER = "InvalidParameterValue"
"""SQS's answer to a bad parameter value; its JSON model names no error for it (only the Query code)."""

_DEFAULTS = {
    "VisibilityTimeout": "30", "MaximumMessageSize": "262144", "MessageRetentionPeriod": "345600",
    "DelaySeconds": "0", "ReceiveMessageWaitTimeSeconds": "0", "SqsManagedSseEnabled": "true",
}
_RANGES = {  # attribute -> (min, max)
    "VisibilityTimeout": (0, 43200), "MaximumMessageSize": (1024, 1048576),
    "MessageRetentionPeriod": (60, 1209600), "DelaySeconds": (0, 900), "ReceiveMessageWaitTimeSeconds": (0, 20),
}
_STORED = frozenset({*_RANGES, "RedrivePolicy", "Policy", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds",
                     "SqsManagedSseEnabled", "RedriveAllowPolicy"})
_SYSTEM_ATTRIBUTES = ("SenderId", "SentTimestamp", "ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp",
                      "DeadLetterQueueSourceArn")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_BATCH = 10
_PURGE_BAN_S = 60.0


@dataclasses.dataclass
class _Message:
    id: str
    body: str
    md5: str
    attributes: dict[str, dict[str, Any]]
    sender: str
    sent_ms: int
    sent_at: float  # monotonic
    visible_at: float  # monotonic: delayed or in flight until then
    receives: int = 0
    first_receive_ms: int | None = None
    dead_letter_source: str | None = None


@dataclasses.dataclass
class _Queue:
    account_id: str
    region: str
    name: str
    url: str
    attributes: dict[str, str]
    tags: dict[str, str]
    created_s: int
    modified_s: int
    messages: dict[str, _Message] = dataclasses.field(default_factory=dict)  # by id, in send order
    purged_at: float | None = None

    @property
    def arn(self) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account_id}:{self.name}"

    def number(self, name: str) -> int:
        return int(self.attributes[name])


class Queues:
    """Every emulated queue, keyed by (account, region, name); thread-safe. ``endpoint_url`` is what queue URLs
    start with (the emulator's endpoint once it serves; AWS's form before)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoint_url: str | None = None
        self._clock = clock
        self._changed = threading.Condition(threading.Lock())
        self._queues: dict[tuple[str, str, str], _Queue] = {}
        self._epoch = 0  # bumped by ``interrupt``: long polls then return what they have

    # --- queues ----------------------------------------------------------------------------------------------

    def create(self, account_id: str, region: str, name: str, attributes: dict[str, str] | None = None,
               tags: dict[str, str] | None = None) -> str:
        """CreateQueue: the queue's URL; the same name with the same attributes again is the same queue."""
        if name.endswith(".fifo") or (attributes or {}).get("FifoQueue", "false").lower() == "true":
            raise errors.ApiError("UnsupportedOperation", "FIFO queues are not emulated by the imagescan emulator.")
        if not _QUEUE_NAME.match(name):
            raise errors.ApiError(INVALID_PARAMETER, "Can only include alphanumeric characters, hyphens, or "
                                  "underscores. 1 to 80 in length")
        given = _normalized(attributes or {}, creating=True)
        with self._changed:
            existing = self._queues.get((account_id, region, name))
            if existing is not None:
                for key, value in given.items():
                    if existing.attributes.get(key, _DEFAULTS.get(key)) != value:
                        raise errors.ApiError("QueueNameExists", "A queue already exists with the same name and a "
                                              f"different value for attribute {key}")
                return existing.url
            now = int(time.time())
            queue = _Queue(account_id, region, name, self._url(account_id, region, name), {**_DEFAULTS, **given},
                           dict(tags or {}), now, now)
            self._queues[(account_id, region, name)] = queue
            return queue.url

    def url_of(self, account_id: str, region: str, name: str) -> str:
        """GetQueueUrl."""
        with self._changed:
            return self._queue_named(account_id, region, name).url

    def set_attributes(self, queue_url: str, region: str, attributes: dict[str, str]) -> None:
        """SetQueueAttributes."""
        given = _normalized(attributes, creating=False)
        with self._changed:
            queue = self._queue(queue_url, region)
            queue.attributes.update(given)
            queue.modified_s = int(time.time())
            self._changed.notify_all()  # a shorter wait or visibility timeout applies to waiting long polls

    def attributes(self, queue_url: str, region: str, names: Iterable[str]) -> dict[str, str]:
        """GetQueueAttributes: those asked for (``All``: every one) that the queue has."""
        wanted = set(names)
        with self._changed:
            queue = self._queue(queue_url, region)
            now = self._clock()
            self._expire(queue, now)
            counts = {"ApproximateNumberOfMessages": 0, "ApproximateNumberOfMessagesNotVisible": 0,
                      "ApproximateNumberOfMessagesDelayed": 0}
            for message in queue.messages.values():
                if message.visible_at <= now:
                    counts["ApproximateNumberOfMessages"] += 1
                elif message.receives:
                    counts["ApproximateNumberOfMessagesNotVisible"] += 1
                else:
                    counts["ApproximateNumberOfMessagesDelayed"] += 1
            every = {
                **queue.attributes, "QueueArn": queue.arn, "CreatedTimestamp": str(queue.created_s),
                "LastModifiedTimestamp": str(queue.modified_s), **{key: str(n) for key, n in counts.items()},
            }
        return every if "All" in wanted else {key: value for key, value in every.items() if key in wanted}

    def delete(self, queue_url: str, region: str) -> None:
        """DeleteQueue: its messages go with it; long polls on it return empty."""
        with self._changed:
            queue = self._queue(queue_url, region)
            del self._queues[(queue.account_id, queue.region, queue.name)]
            self._changed.notify_all()

    def purge(self, queue_url: str, region: str) -> None:
        """PurgeQueue: at most once a minute per queue, as SQS allows."""
        with self._changed:
            queue = self._queue(queue_url, region)
            now = self._clock()
            if queue.purged_at is not None and now - queue.purged_at < _PURGE_BAN_S:
                raise errors.ApiError("PurgeQueueInProgress", f"Only one PurgeQueue operation on {queue.name} "
                                      "is allowed every 60 seconds.")
            queue.purged_at = now
            queue.messages.clear()

    def interrupt(self) -> None:
        """End every waiting long poll now (with what it has): the emulator is stopping."""
        with self._changed:
            self._epoch += 1
            self._changed.notify_all()

    # --- messages --------------------------------------------------------------------------------------------

    def send(self, queue_url: str, region: str, sender: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send validated entries (``MessageBody``, ``DelaySeconds``, ``MessageAttributes``); per entry the ids
        and MD5s SendMessage answers with."""
        with self._changed:
            queue = self._queue(queue_url, region)
            now, sent_ms = self._clock(), int(time.time() * 1000)
            limit = queue.number("MaximumMessageSize")
            for entry in entries:
                _check_body(entry["MessageBody"], entry.get("MessageAttributes") or {}, limit)
            answers = []
            for entry in entries:
                body, attributes = str(entry["MessageBody"]), dict(entry.get("MessageAttributes") or {})
                delay = entry.get("DelaySeconds")
                delay = queue.number("DelaySeconds") if delay is None else int(delay)
                message = _Message(str(uuid.uuid4()), body, _md5(body.encode()), attributes, sender, sent_ms, now,
                                   now + delay)
                queue.messages[message.id] = message
                answer = {"MessageId": message.id, "MD5OfMessageBody": message.md5}
                if attributes:
                    answer["MD5OfMessageAttributes"] = attributes_md5(attributes)
                answers.append(answer)
            self._changed.notify_all()
            return answers

    def receive(
        self, queue_url: str, region: str, *, limit: int, wait_s: float | None, visibility_s: int | None,
        system_attributes: set[str], message_attributes: list[str],
    ) -> list[dict[str, Any]]:
        """ReceiveMessage: up to ``limit`` visible messages, hidden for the visibility timeout once handed out;
        with none visible, wait up to ``wait_s`` (None: the queue's ReceiveMessageWaitTimeSeconds) for one."""
        with self._changed:
            queue = self._queue(queue_url, region)
            epoch, start = self._epoch, self._clock()
            if wait_s is None:
                wait_s = queue.number("ReceiveMessageWaitTimeSeconds")
            deadline = start + wait_s
            while True:
                now = self._clock()
                taken = self._take(queue, now, limit, visibility_s)
                if taken or now >= deadline or self._epoch != epoch:
                    break
                soonest = min((m.visible_at for m in queue.messages.values() if m.visible_at > now), default=deadline)
                self._changed.wait(min(deadline, soonest) - now)
                current = self._queues.get((queue.account_id, queue.region, queue.name))
                if current is not queue:  # deleted (or deleted and re-created) while waiting
                    break
            return [_received(queue, message, receipt, system_attributes, message_attributes)
                    for message, receipt in taken]

    def delete_message(self, queue_url: str, region: str, receipt: str) -> None:
        """DeleteMessage: any receipt handle this queue handed out is valid (deleting again does nothing)."""
        with self._changed:
            queue = self._queue(queue_url, region)
            message_id = _message_of(queue, receipt)
            if message_id is None:
                raise errors.ApiError("ReceiptHandleIsInvalid", _invalid_receipt(receipt))
            queue.messages.pop(message_id, None)

    def _take(self, queue: _Queue, now: float, limit: int, visibility_s: int | None) -> list[tuple[_Message, str]]:
        self._expire(queue, now)
        redrive = _redrive(queue)
        hidden = queue.number("VisibilityTimeout") if visibility_s is None else visibility_s
        taken: list[tuple[_Message, str]] = []
        for message in list(queue.messages.values()):
            if len(taken) == limit:
                break
            if message.visible_at > now:
                continue
            if redrive is not None and message.receives >= redrive[1]:
                target = self._by_arn(redrive[0])
                if target is not None and target is not queue:
                    del queue.messages[message.id]
                    message.dead_letter_source = queue.arn
                    target.messages[message.id] = message
                    self._changed.notify_all()
                    continue
            message.receives += 1
            message.first_receive_ms = message.first_receive_ms or int(time.time() * 1000)
            message.visible_at = now + hidden
            taken.append((message, _receipt(queue, message)))
        return taken

    def _expire(self, queue: _Queue, now: float) -> None:
        retention = queue.number("MessageRetentionPeriod")
        for message in [m for m in queue.messages.values() if now - m.sent_at > retention]:
            del queue.messages[message.id]

    # --- lookups (lock held) ---------------------------------------------------------------------------------

    def _url(self, account_id: str, region: str, name: str) -> str:
        base = self.endpoint_url or f"https://sqs.{region}.amazonaws.com"
        return f"{base.rstrip('/')}/{account_id}/{name}"

    def _queue(self, queue_url: str, region: str) -> _Queue:
        """The queue a URL names (by its path, ``/<account>/<name>``, as SQS routes it) in the caller's region."""
        parts = urllib.parse.urlsplit(queue_url).path.strip("/").split("/")
        if len(parts) != 2 or not re.fullmatch(r"\d{12}", parts[0]) or not parts[1]:
            raise errors.ApiError("InvalidAddress", f"The address {queue_url} is not valid for this endpoint.")
        return self._queue_named(parts[0], region, parts[1])

    def _queue_named(self, account_id: str, region: str, name: str) -> _Queue:
        queue = self._queues.get((account_id, region, name))
        if queue is None:
            raise errors.ApiError("QueueDoesNotExist", "The specified queue does not exist.")
        return queue

    def _by_arn(self, arn: str) -> _Queue | None:
        parts = arn.split(":")
        return self._queues.get((parts[4], parts[3], parts[5])) if len(parts) == 6 else None


# --- handlers: (world, caller, params) -> response, as ecr.py's ----------------------------------------------


def create_queue(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    url = w.sqs.create(caller.account_id, caller.region, str(params["QueueName"]), params.get("Attributes"),
                       params.get("tags"))
    return {"QueueUrl": url}


def get_queue_url(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    account_id = str(params.get("QueueOwnerAWSAccountId") or caller.account_id)
    return {"QueueUrl": w.sqs.url_of(account_id, caller.region, str(params["QueueName"]))}


def get_queue_attributes(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    found = w.sqs.attributes(str(params["QueueUrl"]), caller.region, params.get("AttributeNames") or [])
    return {"Attributes": found} if found else {}


def set_queue_attributes(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    w.sqs.set_attributes(str(params["QueueUrl"]), caller.region, dict(params["Attributes"]))
    return {}


def delete_queue(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    w.sqs.delete(str(params["QueueUrl"]), caller.region)
    return {}


def purge_queue(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    w.sqs.purge(str(params["QueueUrl"]), caller.region)
    return {}


def send_message(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    _check_delay(params.get("DelaySeconds"))
    (answer,) = w.sqs.send(str(params["QueueUrl"]), caller.region, caller.account_id, [params])
    return answer


def send_message_batch(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    entries = list(params["Entries"])
    _check_batch(entries, "Send")
    for entry in entries:
        _check_delay(entry.get("DelaySeconds"))
    total = sum(len(str(e["MessageBody"]).encode()) + _attributes_size(e.get("MessageAttributes") or {})
                for e in entries)
    if total > 1048576:
        raise errors.ApiError("BatchRequestTooLong", f"Batch requests cannot be longer than 1048576 bytes. You have "
                              f"sent {total} bytes.")
    answers = w.sqs.send(str(params["QueueUrl"]), caller.region, caller.account_id, entries)
    return {"Successful": [{"Id": e["Id"], **a} for e, a in zip(entries, answers, strict=True)], "Failed": []}


def receive_message(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    limit = _ranged(params, "MaxNumberOfMessages", 1, 10, "Must be between 1 and 10, if provided.")
    wait = _ranged(params, "WaitTimeSeconds", 0, 20, "Must be >= 0 and <= 20, if provided.")
    visibility = _ranged(params, "VisibilityTimeout", 0, 43200, "Must be >= 0 and <= 43200, if provided.")
    names = {*(params.get("AttributeNames") or []), *(params.get("MessageSystemAttributeNames") or [])}
    system = set(_SYSTEM_ATTRIBUTES) if "All" in names else names & set(_SYSTEM_ATTRIBUTES)
    messages = w.sqs.receive(
        str(params["QueueUrl"]), caller.region, limit=1 if limit is None else limit, wait_s=wait,
        visibility_s=visibility, system_attributes=system,
        message_attributes=[str(n) for n in params.get("MessageAttributeNames") or []],
    )
    return {"Messages": messages} if messages else {}


def delete_message(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    w.sqs.delete_message(str(params["QueueUrl"]), caller.region, str(params["ReceiptHandle"]))
    return {}


def delete_message_batch(w: world.World, caller: identity.Caller, params: dict[str, Any]) -> dict[str, Any]:
    entries = list(params["Entries"])
    _check_batch(entries, "Delete")
    url = str(params["QueueUrl"])
    w.sqs.attributes(url, caller.region, ())  # a missing queue fails the whole request, not each entry
    successful: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for entry in entries:
        try:
            w.sqs.delete_message(url, caller.region, str(entry["ReceiptHandle"]))
        except errors.ApiError as exc:
            if exc.code == "QueueDoesNotExist":  # deleted in between
                raise
            failed.append({"Id": entry["Id"], "SenderFault": True, "Code": exc.code, "Message": exc.message})
        else:
            successful.append({"Id": entry["Id"]})
    return {"Successful": successful, "Failed": failed}


Handler = Callable[["world.World", identity.Caller, dict[str, Any]], dict[str, Any]]
OPERATIONS: dict[str, Handler] = {
    "CreateQueue": create_queue, "GetQueueUrl": get_queue_url, "GetQueueAttributes": get_queue_attributes,
    "SetQueueAttributes": set_queue_attributes, "DeleteQueue": delete_queue, "PurgeQueue": purge_queue,
    "SendMessage": send_message, "SendMessageBatch": send_message_batch, "ReceiveMessage": receive_message,
    "DeleteMessage": delete_message, "DeleteMessageBatch": delete_message_batch,
}


def query_error(code: str) -> str:
    """The ``x-amzn-query-error`` header SQS sends with an error: its Query code and who is at fault."""
    fault = "Receiver" if code in ("ServiceException", "InternalFailure", "ServiceUnavailable") else "Sender"
    return f"{QUERY_CODES.get(code, code)};{fault}"


# --- message digests -------------------------------------------------------------------------------------------


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def attributes_md5(attributes: dict[str, dict[str, Any]]) -> str:
    """MD5OfMessageAttributes as SQS computes it: per attribute in name order, the length-prefixed name, data
    type, a transport byte (1 string, 2 binary) and the length-prefixed value."""
    data = bytearray()
    for name in sorted(attributes):
        value = attributes[name]
        data += _prefixed(name.encode()) + _prefixed(str(value["DataType"]).encode())
        if "StringValue" in value:
            data += b"\x01" + _prefixed(str(value["StringValue"]).encode())
        else:
            data += b"\x02" + _prefixed(_binary(value.get("BinaryValue")))
    return _md5(bytes(data))


def _prefixed(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _binary(value: Any) -> bytes:
    """A blob as the JSON protocol carries it: base64 text."""
    try:
        return base64.b64decode(str(value or ""), validate=True)
    except binascii.Error as exc:
        raise errors.ApiError(INVALID_PARAMETER, "The message attribute's binary value is not base64.") from exc


def _attributes_size(attributes: dict[str, dict[str, Any]]) -> int:
    return sum(len(name.encode()) + len(str(v.get("DataType", "")).encode())
               + len(str(v.get("StringValue", "")).encode()) + len(_binary(v.get("BinaryValue")))
               for name, v in attributes.items())


# --- receipts and received messages ------------------------------------------------------------------------------


def _receipt(queue: _Queue, message: _Message) -> str:
    """A new handle per receive, naming the queue and the message (so none needs remembering)."""
    raw = f"{queue.arn}\n{message.id}\n{uuid.uuid4().hex}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _message_of(queue: _Queue, receipt: str) -> str | None:
    """The message id in a handle this queue handed out; None for anything else."""
    try:
        arn, message_id, _ = base64.urlsafe_b64decode(receipt.encode()).decode().split("\n")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return message_id if arn == queue.arn else None


def _invalid_receipt(receipt: str) -> str:
    return f'The input receipt handle "{receipt}" is not a valid receipt handle.'


def _received(queue: _Queue, message: _Message, receipt: str, system: set[str],
              wanted: list[str]) -> dict[str, Any]:
    answer: dict[str, Any] = {"MessageId": message.id, "ReceiptHandle": receipt, "MD5OfBody": message.md5,
                              "Body": message.body}
    values = {
        "SenderId": message.sender, "SentTimestamp": str(message.sent_ms),
        "ApproximateReceiveCount": str(message.receives),
        "ApproximateFirstReceiveTimestamp": str(message.first_receive_ms),
        "DeadLetterQueueSourceArn": message.dead_letter_source,
    }
    attributes = {name: value for name, value in values.items() if name in system and value is not None}
    if attributes:
        answer["Attributes"] = attributes
    chosen = {name: value for name, value in message.attributes.items() if _selected(name, wanted)}
    if chosen:
        answer["MessageAttributes"] = chosen
        answer["MD5OfMessageAttributes"] = attributes_md5(chosen)
    return answer


def _selected(name: str, wanted: list[str]) -> bool:
    return any(w in ("All", ".*") or w == name or (w.endswith(".*") and name.startswith(w[:-1])) for w in wanted)


# --- validation beyond the model (SQS's own limits) --------------------------------------------------------------


def _normalized(attributes: dict[str, Any], *, creating: bool) -> dict[str, str]:
    """Queue attributes as stored: range-checked numbers, a RedrivePolicy in SQS's compact JSON."""
    stored: dict[str, str] = {}
    for key, raw in attributes.items():
        value = str(raw)
        if key == "FifoQueue" and creating:
            continue  # "false" only (create refused "true")
        if key not in _STORED:
            raise errors.ApiError("InvalidAttributeName", f"Unknown Attribute {key}.")
        if key in _RANGES:
            low, high = _RANGES[key]
            if not value.isdigit() or not low <= int(value) <= high:
                raise errors.ApiError("InvalidAttributeValue", f"Invalid value for the parameter {key}.")
            value = str(int(value))
        elif key == "RedrivePolicy" and value:
            value = _redrive_policy(value)
        stored[key] = value
    return stored


def _redrive_policy(text: str) -> str:
    try:
        policy = json.loads(text)
        target, count = str(policy["deadLetterTargetArn"]), int(policy["maxReceiveCount"])
    except (ValueError, TypeError, KeyError) as exc:
        raise errors.ApiError(INVALID_PARAMETER, f"Value {text} for parameter RedrivePolicy is invalid. Reason: "
                              "Redrive policy is not a valid JSON map.") from exc
    if not 1 <= count <= 1000 or len(target.split(":")) != 6 or not target.startswith("arn:aws:sqs:"):
        raise errors.ApiError(INVALID_PARAMETER, f"Value {text} for parameter RedrivePolicy is invalid. Reason: "
                              "Invalid value for maxReceiveCount or deadLetterTargetArn.")
    return json.dumps({"deadLetterTargetArn": target, "maxReceiveCount": count}, separators=(",", ":"))


def _redrive(queue: _Queue) -> tuple[str, int] | None:
    text = queue.attributes.get("RedrivePolicy")
    if not text:
        return None
    policy = json.loads(text)
    return str(policy["deadLetterTargetArn"]), int(policy["maxReceiveCount"])


def _ranged(params: dict[str, Any], name: str, low: int, high: int, reason: str) -> int | None:
    value = params.get(name)
    if value is not None and not low <= int(value) <= high:
        raise errors.ApiError(INVALID_PARAMETER, f"Value {value} for parameter {name} is invalid. Reason: {reason}")
    return None if value is None else int(value)


def _check_delay(value: Any) -> None:
    _ranged({"DelaySeconds": value}, "DelaySeconds", 0, 900, "Must be >= 0 and <= 900, if provided.")


def _check_body(body: Any, attributes: dict[str, dict[str, Any]], limit: int) -> None:
    size = len(str(body).encode()) + _attributes_size(attributes)
    if not str(body):
        raise errors.ApiError(INVALID_PARAMETER, "The request must contain the parameter MessageBody.")
    if size > limit:
        raise errors.ApiError(INVALID_PARAMETER, f"One or more parameters are invalid. Reason: Message must be "
                              f"shorter than {limit} bytes.")
    for name, value in attributes.items():
        kind = str(value.get("DataType", ""))
        needed = "BinaryValue" if kind.startswith("Binary") else "StringValue"
        if kind.split(".", 1)[0] not in ("String", "Number", "Binary") or needed not in value:
            raise errors.ApiError(INVALID_PARAMETER, f"The message attribute '{name}' must contain a non-empty "
                                  "message attribute value for message attribute type "
                                  f"'{kind.split('.', 1)[0] or 'None'}'.")


def _check_batch(entries: list[dict[str, Any]], action: str) -> None:
    if not entries:
        raise errors.ApiError("EmptyBatchRequest", f"There should be at least one {action}MessageBatchRequestEntry "
                              "in the request.")
    if len(entries) > _BATCH:
        raise errors.ApiError("TooManyEntriesInBatchRequest", f"Maximum number of entries per request are "
                              f"{_BATCH}. You have sent {len(entries)}.")
    seen: set[str] = set()
    for entry in entries:
        entry_id = str(entry["Id"])
        if not _BATCH_ID.match(entry_id):
            raise errors.ApiError("InvalidBatchEntryId", "A batch entry id can only contain alphanumeric "
                                  "characters, hyphens and underscores. It can be at most 80 letters long.")
        if entry_id in seen:
            raise errors.ApiError("BatchEntryIdsNotDistinct", f"Id {entry_id} repeated.")
        seen.add(entry_id)
