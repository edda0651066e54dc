"""Back-off for throttling that botocore does not retry.

Image Builder answers throttling with ``CallRateLimitExceededException`` (HTTP 429), which botocore's
standard and adaptive retry modes do not treat as retryable. Retrying it at once from many worker threads
would make a throttling storm worse, so a throttled call both sleeps with full jitter and closes a gate that
every other call of the same operation on the same client waits at: the whole operator slows down for that
operation, not just the unlucky thread. AWS sets its rate quotas per operation (per account and region), so a
throttled GetImagePipeline does not hold back ListImageScanFindings, which has a budget of its own.
botocore's own standard mode still handles 5xx and connection errors.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from botocore.retries import adaptive, bucket, throttling

THROTTLING_CODES = frozenset({"CallRateLimitExceededException", "ThrottlingException", "TooManyRequestsException"})


class ThrottleGate:
    """A shared "not before" time per operation for every call through one client."""

    def __init__(self, *, base: float = 0.5, cap: float = 8.0, max_attempts: int = 4,
                 rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.max_attempts = max_attempts
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._not_before: dict[str, float] = {}
        self.throttled = 0

    def wait(self, event_name: str = "", **_: Any) -> None:
        """Block until the operation's gate is open (a botocore ``before-send`` hook: returns None)."""
        delay = self._not_before.get(_operation(event_name), 0.0) - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def backoff(self, attempt: int, operation: str = "") -> float:
        """Full-jitter exponential delay for the given (1-based) attempt, and close the operation's gate for it."""
        delay = self._rng.uniform(0, min(self.cap, self.base * 2 ** attempt))
        with self._lock:
            self.throttled += 1
            until = time.monotonic() + delay / 2
            self._not_before[operation] = max(self._not_before.get(operation, 0.0), until)
        return delay

    def needs_retry(self, response: Any = None, attempts: int = 1, event_name: str = "", **_: Any) -> float | None:
        """A botocore ``needs-retry`` hook: a delay for throttling, None (no opinion) for the rest."""
        if not response or attempts >= self.max_attempts:
            return None
        parsed = response[1] if isinstance(response, tuple) and len(response) > 1 else {}
        code = (parsed or {}).get("Error", {}).get("Code")
        if code not in THROTTLING_CODES:
            return None
        return self.backoff(attempts, _operation(event_name))


def _operation(event_name: str) -> str:
    """``needs-retry.imagebuilder.GetImagePipeline`` -> ``GetImagePipeline`` (botocore names its events so)."""
    return event_name.rsplit(".", 1)[-1] if event_name.count(".") >= 2 else ""


class RateLimiters:
    """botocore's adaptive-mode client rate limiter (a CUBIC send rate over a token bucket), one per operation.

    botocore engages it only for the throttling errors it knows, which leave out Image Builder's
    ``CallRateLimitExceededException``, and keeps one per client while AWS's quotas are per operation. Here each
    operation gets its own, engaged by any of ``THROTTLING_CODES``: after the first throttle, calls of that
    operation are paced at the rate AWS accepted (probing upwards as CUBIC does), instead of being sent in
    bursts that mostly bounce. Until then it costs nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limiters: dict[str, adaptive.ClientRateLimiter] = {}

    def before_send(self, event_name: str = "", request: Any = None, **_: Any) -> None:
        self._limiter(_operation(event_name)).on_sending_request(request)

    def after_response(self, event_name: str = "", **kwargs: Any) -> None:
        """A ``needs-retry`` hook that only observes (returns None): every attempt's answer adjusts the rate."""
        kwargs.pop("attempts", None)
        self._limiter(_operation(event_name)).on_receiving_response(**kwargs)

    def _limiter(self, operation: str) -> adaptive.ClientRateLimiter:
        with self._lock:
            found = self._limiters.get(operation)
            if found is None:
                clock = bucket.Clock()
                found = adaptive.ClientRateLimiter(
                    rate_adjustor=throttling.CubicCalculator(starting_max_rate=0, start_time=clock.current_time()),
                    rate_clocker=adaptive.RateClocker(clock),
                    token_bucket=bucket.TokenBucket(max_rate=1, clock=clock),
                    throttling_detector=_AnyThrottling(), clock=clock,
                )
                self._limiters[operation] = found
            return found


class _AnyThrottling:
    """What botocore's limiter asks of a throttling detector, answering for every code we treat as throttling."""

    def is_throttling_error(self, response: Any = None, **_: Any) -> bool:
        parsed = response[1] if isinstance(response, tuple) and len(response) > 1 else {}
        return (parsed or {}).get("Error", {}).get("Code") in THROTTLING_CODES


def install(client: Any, gate: ThrottleGate) -> None:
    """Hook the gate and the per-operation rate limiters into a boto3 client's event system, so paginators
    are covered too. Both, because they do different things: the limiters pace sends once AWS has throttled
    (measured: 0.61 -> 0.91 of the quota floor's speed), the gate retries the throttled call itself, which
    botocore does not for Image Builder."""
    service = client.meta.service_model.endpoint_prefix
    events = client.meta.events
    limiters = RateLimiters()
    events.register(f"before-send.{service}", limiters.before_send)
    events.register(f"needs-retry.{service}", limiters.after_response)
    events.register(f"needs-retry.{service}", gate.needs_retry)
    events.register(f"before-send.{service}", gate.wait)
