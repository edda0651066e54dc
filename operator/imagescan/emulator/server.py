"""HTTP front end: one endpoint serving Image Builder and Inspector2, plus the knobs tests turn.

A ``ThreadingHTTPServer`` in a background thread keeps the emulator dependency-free and lets ~20 client threads
hit it concurrently; HTTP/1.1 keep-alive and TCP_NODELAY keep per-call overhead low for benchmarks. The signing
service in the SigV4 ``Authorization`` header picks the service, so a single ``AWS_ENDPOINT_URL`` serves both;
its access key and region say who calls and where (``identity``: the world's account unless a test maps the key,
or STS at ``sts_endpoint_url`` resolves it), and every handler acts for that ``Caller``.
``Emulator`` adds per-call latency, fault injection and call counters on top of the ``world``; for reliability
tests also a call log, faults aimed at chosen pipelines and one-shot hooks before an update (``audit``); for
Inspector how long activation takes (``inspector_delay_s``) and which resource types fail to activate; for
benchmarks AWS's per-operation rate limits (``ratelimit``); for push intake the EventBridge events the
services send, delivered to an SQS queue (``events``, ``sink``), which the same endpoint can hold (``sqs``: its
calls are counted in ``queue_calls``, apart from the AWS API calls in ``calls`` and ``call_log``).
"""

from __future__ import annotations

import argparse
import collections
import http.server
import logging
import random
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from botocore import model as bmodel

from imagescan.emulator import (
    audit,
    control,
    ecr,
    errors,
    identity,
    imagebuilder,
    inspector,
    options,
    protocol,
    ratelimit,
    sink,
    sqs,
    validation,
    world,
)

log = logging.getLogger(__name__)
_HANDLERS = {
    protocol.IMAGEBUILDER: imagebuilder.OPERATIONS, protocol.INSPECTOR2: inspector.OPERATIONS,
    protocol.ECR: ecr.OPERATIONS, protocol.SQS: sqs.OPERATIONS,
}
Response = tuple[int, dict[str, str], bytes]
# Each service's answer past its rate limit (code, HTTP status; None: as modeled). ECR models no throttling
# error: AWS's JSON front end answers ThrottlingException with 400, which botocore retries as throttling. SQS
# models RequestThrottled (no status: 400), also in botocore's throttling codes.
_THROTTLING = {
    protocol.IMAGEBUILDER: ("CallRateLimitExceededException", None), protocol.INSPECTOR2: ("ThrottlingException", None),
    protocol.ECR: ("ThrottlingException", 400), protocol.SQS: ("RequestThrottled", None),
}


class _Faults:
    """Which upcoming calls fail, and with what code; decisions are seeded so runs repeat."""

    def __init__(self, seed: int) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed ^ 0x5EED)
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._rate = 0.0
            self._codes: tuple[str, ...] = ()
            self._operations: frozenset[str] | None = None
            self._remaining: int | None = None
            self._targeted: dict[str, tuple[str, ...]] = {}

    def target(self, arns: Iterable[str], codes: Sequence[str]) -> None:
        if not codes:
            raise ValueError("at least one error code is needed")
        with self._lock:
            self._targeted.update(dict.fromkeys(arns, tuple(codes)))

    def untarget(self, arns: Iterable[str]) -> None:
        with self._lock:
            for arn in arns:
                self._targeted.pop(arn, None)

    def pick_targeted(self, arn: str | None) -> str | None:
        """The error code every call naming this pipeline fails with, if it is targeted."""
        if arn is None:
            return None
        with self._lock:
            codes = self._targeted.get(arn)
            return self._rng.choice(codes) if codes else None

    def arm(self, rate: float, codes: Sequence[str], operations: Iterable[str] | None, count: int | None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if not codes:
            raise ValueError("at least one error code is needed")
        with self._lock:
            self._rate, self._codes = rate, tuple(codes)
            self._operations = frozenset(operations) if operations is not None else None
            self._remaining = count

    def pick(self, operation: str, *, named_only: bool = False) -> str | None:
        """The error code this call must fail with, or None to let it through; ``named_only``: only if the
        faults name this operation."""
        with self._lock:
            if not self._codes or (self._operations is None and named_only):
                return None
            if self._operations is not None and operation not in self._operations:
                return None
            if self._remaining is not None:  # exact mode: the next N matching calls fail, rate ignored
                if self._remaining <= 0:
                    return None
                self._remaining -= 1
            elif self._rng.random() >= self._rate:
                return None
            return self._rng.choice(self._codes)


class Emulator:
    """An Image Builder + Inspector2 endpoint backed by a seeded ``world.World``."""

    def __init__(
        self,
        seed: int = 7,
        pipelines: int = 4,
        account_id: str = "123456789012",
        region: str = "us-east-1",
        latency_s: float = 0.0,
        inspector_enabled: bool = True,
        *,
        sts_endpoint_url: str | None = None,
        inspector_delay_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        events_queue_url: str | None = None,
        events_endpoint_url: str | None = None,
        events_region: str | None = None,
        rate_limit_tps: float | None = None,
        rate_limit_burst: float | None = None,
    ) -> None:
        """``sts_endpoint_url``: resolve callers' access keys to accounts with STS there (moto's server);
        without it every caller is ``account_id`` unless mapped in ``identities``. ``inspector_delay_s``: how
        long Inspector stays ENABLING/DISABLING. ``clock``: what times those transitions and refills the rate
        limit's buckets (tests step it). ``events_queue_url``: send EventBridge events to this SQS queue (at
        ``events_endpoint_url``, e.g. moto's server, signed for ``events_region``), see ``send_events_to``.
        ``rate_limit_tps``: throttle each operation per account and region past this rate (``rate_limit_burst``
        at once), see ``set_rate_limit``."""
        self.world = world.World(seed=seed, account_id=account_id, region=region, clock=clock)
        self.world.populate(pipelines)
        if inspector_enabled:  # demos can turn scanning on straight away
            self.world.set_inspector(account_id, {"EC2": "ENABLED", "ECR": "ENABLED"})
        self.inspector_delay_s = inspector_delay_s
        self.identities = identity.Identities(account_id, region, sts_endpoint_url)
        """Access key id -> account; ``identities[key] = account_id`` maps one explicitly."""
        self.latency_s = latency_s
        self.calls: collections.Counter[str] = collections.Counter()
        self.call_log = audit.CallLog()  # every request: when, which operation, which ARN, which error
        self.queue_calls: collections.Counter[str] = collections.Counter()
        """SQS calls per operation: the push intake's transport (and the event sink's sends), kept out of
        ``calls`` and ``call_log``, which count the AWS API calls benchmarks and reliability tests measure."""
        self.hooks = audit.Hooks()
        self.endpoint_url: str | None = None
        self._calls_lock = threading.Lock()
        self._faults = _Faults(seed)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.rate_limits = ratelimit.RateLimits(clock)
        if rate_limit_tps is not None:
            self.set_rate_limit(rate_limit_tps, rate_limit_burst)
        self._sink: sink.SqsSink | None = None
        if events_queue_url is not None:
            self.send_events_to(events_queue_url, events_endpoint_url, events_region)

    # --- lifecycle -----------------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a daemon thread; returns the endpoint URL (also kept in ``endpoint_url``)."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        self._server = _Server((host, port), self)
        bound_host, bound_port = self._server.server_address[:2]
        shown = bound_host if isinstance(bound_host, str) else bound_host.decode()
        self.endpoint_url = f"http://{shown}:{bound_port}"
        self.world.sqs.endpoint_url = self.endpoint_url  # queue URLs: <endpoint>/<account>/<name>
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="imagescan-emulator", daemon=True
        )
        self._thread.start()
        return self.endpoint_url

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        self.world.sqs.interrupt()  # long polls answer now instead of holding their threads up to 20 s
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self.stop_events()

    def __enter__(self) -> Emulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- knobs ---------------------------------------------------------------------------------------------

    def inject_faults(
        self,
        rate: float = 1.0,
        codes: Sequence[str] = ("CallRateLimitExceededException",),
        operations: Iterable[str] | None = None,
        count: int | None = None,
    ) -> None:
        """Fail matching calls: with probability ``rate``, or exactly the next ``count`` of them."""
        self._faults.arm(rate, codes, operations, count)

    def fail_pipelines(self, arns: Iterable[str], codes: Sequence[str] = ("ResourceInUseException",)) -> None:
        """Fail every call that names one of these pipelines (checked before, and instead of, the random
        faults), until ``heal_pipelines`` or ``clear_faults``."""
        self._faults.target(arns, codes)

    def heal_pipelines(self, arns: Iterable[str]) -> None:
        """Stop failing calls that name these pipelines."""
        self._faults.untarget(arns)

    def clear_faults(self) -> None:
        """Let every call through again."""
        self._faults.clear()

    @property
    def inspector_delay_s(self) -> float:
        """Seconds an Inspector Enable stays ENABLING (and a Disable DISABLING); 0 makes them immediate."""
        return self.world.inspector.delay_s

    @inspector_delay_s.setter
    def inspector_delay_s(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the Inspector delay cannot be negative")
        self.world.inspector.delay_s = seconds

    def fail_inspector_type(
        self, account_id: str, region: str, resource_type: str, error_code: str, message: str
    ) -> None:
        """Make Inspector Enable fail for this resource type (``EC2``, ``ECR``, ...) of an account in a region:
        the type stays DISABLED with ``error_code`` (one of Inspector's ErrorCode values) and ``message``, and
        the account comes back in Enable's ``failedAccounts``; until ``heal_inspector_type``."""
        self.world.inspector.fail((account_id, region), resource_type, error_code, message)

    def heal_inspector_type(self, account_id: str, region: str, resource_type: str) -> None:
        """Let Enable of this type succeed again (the next Enable clears the recorded error)."""
        self.world.inspector.heal((account_id, region), resource_type)

    def before_next_update(self, arn: str, action: Callable[[], object]) -> None:
        """Run ``action`` (in the server's thread, outside every lock) when the next UpdateImagePipeline for
        ``arn`` arrives, before it is handled: e.g. another writer's change landing between a client's read
        and its write. The action may call the emulator over HTTP; its own updates do not trigger it."""
        self.hooks.before_next_update(arn, action)

    @property
    def updates(self) -> audit.UpdateLog:
        """Every UpdateImagePipeline applied, with the non-scanning fields it changed."""
        return self.world.update_log

    def reset_calls(self) -> None:
        """Zero the per-operation call and throttle counters and empty the call log."""
        with self._calls_lock:
            self.calls.clear()
            self.queue_calls.clear()
        self.call_log.clear()
        self.rate_limits.reset_counts()

    def set_rate_limit(
        self, tps: float | None, burst: float | None = None,
        operations: Mapping[str, tuple[float, float | None]] | None = None,
    ) -> None:
        """Answer calls past ``tps`` per second (``burst`` at once, default one second's worth) per account,
        region and operation with the service's throttling error; ``operations``: name -> (tps, burst) for
        operations with limits of their own. ``tps`` None: no limit but the overrides. Buckets start full."""
        default = ratelimit.limit(tps, burst) if tps is not None else None
        overrides = {name: ratelimit.limit(*rule) for name, rule in (operations or {}).items()}
        self.rate_limits.configure(default, overrides)

    @property
    def throttles(self) -> dict[str, int]:
        """Calls refused by the rate limit, per operation, since the last ``reset_calls``."""
        return self.rate_limits.throttled()

    # --- events --------------------------------------------------------------------------------------------

    def send_events_to(self, queue_url: str, endpoint_url: str | None = None, region: str | None = None) -> None:
        """Deliver every EventBridge event the world sends (builds, scans, ``emit_burst``) to this SQS queue,
        one message per event whose body is the event, as an EventBridge rule with an SQS target does;
        ``region`` defaults to the world's. Replaces an earlier queue (after sending what it still holds)."""
        self.stop_events()
        self._sink = sink.SqsSink(queue_url, endpoint_url=endpoint_url, region=region or self.world.region)
        self.world.on_event = self._sink.put

    def stop_events(self) -> None:
        """Stop sending events (what is already queued is still sent); safe to call twice."""
        current, self._sink = self._sink, None
        if current is not None:
            self.world.on_event = None
            current.stop()

    def event_counts(self) -> dict[str, Any]:
        """``{"sent": {detail-type: n}, "failed": {...}, "pending": n, "queueUrl": url | None}``."""
        current = self._sink
        if current is None:
            return {"sent": {}, "failed": {}, "pending": 0, "queueUrl": None}
        return current.counts()

    def flush_events(self, timeout: float = 30.0) -> bool:
        """Wait until every event sent so far reached the queue (or failed); False on timeout."""
        current = self._sink
        return current.wait_idle(timeout) if current is not None else True

    def emit_burst(self, image_arns: Sequence[str], count: int) -> int:
        """Send ``count`` CVE Detected events spread over these images (repeats included), as fast as the
        queue takes them; returns how many were queued (0 with no queue set)."""
        return self.world.emit_burst(image_arns, count)

    # --- request handling ----------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one HTTP request (``headers`` keys lower-case); transport-free so it is easy to test."""
        path, _, query = target.partition("?")
        if path.startswith(control.PREFIX):
            return control.handle(self, method, path, body)
        routed = _route(method, path, headers.get("authorization"), headers.get("x-amz-target"))
        if routed is None:
            return _error_response(404, "UnknownOperationException", f"No operation for {method} {path}")
        svc, op = routed
        arrived = time.monotonic()
        queued = svc.name == protocol.SQS
        with self._calls_lock:  # faulted and rejected calls count: the client did make them
            (self.queue_calls if queued else self.calls)[op.name] += 1
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        decoded = _decode(svc, op, query, headers, body)
        arn = audit.named_arn(decoded) if isinstance(decoded, dict) else None
        if op.name == "UpdateImagePipeline":
            for action in self.hooks.take_before_update(arn):
                action()
        error: str | None = None
        try:
            return 200, {}, protocol.encode(self._invoke(svc, op, decoded, arn, headers.get("authorization")))
        except errors.ApiError as exc:
            error = exc.code
            status = exc.status or _status(svc, exc.code)
            return _error_response(status, exc.code, exc.message, exc.extra, _error_headers(svc, exc.code, exc.headers))
        except Exception:  # a bug here must look like AWS's 500, not kill the connection
            error = "ServiceException"
            log.exception("emulator failed on %s", op.name)
            headers = _error_headers(svc, error, {})
            return _error_response(500, "ServiceException", "Internal emulator error.", headers=headers)
        finally:
            if not queued:
                self.call_log.record(arrived, op.name, arn, error)

    def _invoke(
        self, svc: protocol.Service, op: bmodel.OperationModel, decoded: dict[str, Any] | errors.ApiError,
        arn: str | None, authorization: str | None,
    ) -> dict[str, Any]:
        # SQS fails and throttles only when a fault or a limit names its operation: faults and limits at large
        # are about the AWS APIs under test, and SQS has no practical API rate limit.
        queued = svc.name == protocol.SQS
        fault = self._faults.pick_targeted(arn) or self._faults.pick(op.name, named_only=queued)
        if fault is not None:
            raise errors.ApiError(fault, f"Injected fault for {op.name}.")
        caller = self.identities.caller(authorization)  # AWS authenticates before it looks at the input
        wait = self.rate_limits.admit(caller.account_id, caller.region, op.name, named_only=queued)
        if wait is not None:
            raise _throttled(svc, wait)
        if isinstance(decoded, errors.ApiError):
            raise decoded
        params = decoded
        found = validation.problems(op.input_shape, params) if op.input_shape is not None else []
        if found:
            problem = errors.ApiError(svc.validation_code, validation.describe(found))
            if svc.name == protocol.INSPECTOR2:  # Inspector's ValidationException models a reason
                problem.extra["reason"] = "FIELD_VALIDATION_FAILED"
            raise problem
        handler = _HANDLERS[svc.name].get(op.name)
        if handler is None:
            raise errors.ApiError(
                "ServiceException", f"{op.name} is not implemented by the imagescan emulator.", status=501
            )
        result = handler(self.world, caller, params)
        if op.output_shape is not None and "requestId" in op.output_shape.members:
            result = {"requestId": str(uuid.uuid4()), **result}
        return result


def _decode(
    svc: protocol.Service, op: bmodel.OperationModel, query: str, headers: Mapping[str, str], body: bytes
) -> dict[str, Any] | errors.ApiError:
    """The request's parameters, or the error a malformed one gets (raised after any injected fault)."""
    try:
        return protocol.decode_request(svc, op, urllib.parse.parse_qs(query), headers, body)
    except errors.ApiError as exc:
        return exc


def _route(
    method: str, path: str, authorization: str | None, target: str | None,
) -> tuple[protocol.Service, bmodel.OperationModel] | None:
    """Pick the service from the signing scope; unsigned requests fall back to whichever path matches."""
    named = protocol.service_from_authorization(authorization)
    for name in (named,) if named else protocol.SERVICES:
        svc = protocol.service(name)
        op = svc.route(method, path, target)
        if op is not None:
            return svc, op
    return None


def _status(svc: protocol.Service, code: str) -> int:
    """Status of a code as modeled by the called service, else by the other one (injected faults)."""
    if code in svc.error_status:
        return svc.error_status[code]
    for name in protocol.SERVICES:
        other = protocol.service(name)
        if code in other.error_status:
            return other.error_status[code]
    return 400


def _throttled(svc: protocol.Service, wait: float) -> errors.ApiError:
    """The service's answer to a call past its rate limit; Inspector's error models a Retry-After header."""
    code, status = _THROTTLING[svc.name]
    headers = {"Retry-After": ratelimit.retry_after(wait)} if svc.name == protocol.INSPECTOR2 else {}
    return errors.ApiError(code, "Rate exceeded", status=status, headers=headers)


def _error_headers(svc: protocol.Service, code: str, headers: Mapping[str, str]) -> dict[str, str]:
    """SQS adds its Query code (botocore raises the modeled exception from it, as with real SQS)."""
    if svc.name == protocol.SQS:
        return {**headers, "x-amzn-query-error": sqs.query_error(code)}
    return dict(headers)


def _error_response(
    status: int, code: str, message: str, extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    # JSON-protocol clients (ECR) read the code from __type; REST-JSON ones from the header.
    body = {"__type": code, "message": message, **(extra or {})}
    return status, {"x-amzn-ErrorType": code, **(headers or {})}, protocol.encode(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # bursts from many client threads must not be refused

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(address, _RequestHandler)


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: botocore reuses pooled connections
    disable_nagle_algorithm = True  # headers and body are separate writes; don't wait for delayed ACKs
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        status, extra, payload = self.server.emulator.handle(self.command, self.path, headers, body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


# --- command line ------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagescan-emulator", description=__doc__.splitlines()[0])
    options.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m imagescan.emulator``: parse the options, then ``serve``."""
    return serve(_parser().parse_args(argv))


def serve(args: argparse.Namespace) -> int:
    """Run the emulator with parsed ``options`` until Ctrl-C/SIGTERM, printing the endpoint and pipelines."""
    emu = Emulator(
        seed=args.seed,
        pipelines=args.pipelines,
        account_id=args.account_id,
        region=args.region,
        latency_s=args.latency_ms / 1000.0,
        inspector_enabled=not args.no_inspector,
        sts_endpoint_url=args.sts_endpoint_url,
        inspector_delay_s=args.inspector_delay_s,
        events_queue_url=args.events_queue_url,
        events_endpoint_url=args.events_endpoint_url,
        events_region=args.events_region,
        rate_limit_tps=args.rate_limit_tps,
        rate_limit_burst=args.rate_limit_burst,
    )
    if args.fail_rate > 0:
        emu.inject_faults(rate=args.fail_rate, codes=("CallRateLimitExceededException", "ServiceUnavailableException"))
    url = emu.start(host=args.host, port=args.port)
    print(f"endpoint_url: {url}", flush=True)
    for pipeline in emu.world.pipelines():
        print(f"  {pipeline['name']:<28} {pipeline['arn']}", flush=True)
    stopped = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda _sig, _frame: stopped.set())
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
