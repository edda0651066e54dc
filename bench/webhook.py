"""Admission webhook load: AdmissionReviews over HTTPS at a fixed rate, to a running operator.

    python bench/webhook.py --url https://localhost:9443/validate --ca certs/ca.crt \\
        --image 123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1.0.0-1 --rate 200 --duration 30

Each request is a Pod CREATE review (one container; the images given with --image in turn), as the API server
sends it. Requests are sent on a fixed schedule (open loop): a slow answer does not hold back the next
request, as it would not on a real API server. Reported: requests sent and answered, allowed and denied,
errors (transport errors, timeouts, HTTP status other than 200, answers that are not an AdmissionReview for
the request's uid), latency p50 / p99 / max from sending to the whole answer, and how late the generator
itself sent (on a busy machine it competes with the operator for CPU: a high lag means the figures measure
the generator as well).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import pathlib
import ssl
import statistics
import sys
import time
import uuid
from typing import Any

import aiohttp

REVIEW_TIMEOUT = 5.0  # the shipped webhook configuration's timeoutSeconds: later answers are errors


@dataclasses.dataclass
class Results:
    """What the run saw; latencies in seconds."""

    sent: int = 0
    allowed: int = 0
    denied: int = 0
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    latencies: list[float] = dataclasses.field(default_factory=list)
    lags: list[float] = dataclasses.field(default_factory=list)
    elapsed: float = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent, "answered": self.allowed + self.denied, "allowed": self.allowed,
            "denied": self.denied, "errors": sum(self.errors.values()), "error_kinds": dict(self.errors),
            "rate_achieved": round(self.sent / self.elapsed, 1) if self.elapsed else 0.0,
            "latency_ms": _percentiles(self.latencies), "send_lag_ms": _percentiles(self.lags),
        }


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"p50": round(statistics.median(ordered) * 1000, 2), "p99": round(p99 * 1000, 2),
            "max": round(ordered[-1] * 1000, 2)}


def review(image: str, namespace: str, index: int) -> dict[str, Any]:
    """A Pod CREATE review in the API server's shape (and field order: the uid first)."""
    name = f"bench-{index}"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
           "spec": {"containers": [{"name": "app", "image": image}]}}
    resource = {"group": "", "version": "v1", "resource": "pods"}
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {
        "uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": resource, "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": resource, "name": name, "namespace": namespace, "operation": "CREATE",
        "userInfo": {"username": "bench", "groups": ["system:authenticated"]},
        "object": pod, "oldObject": None, "dryRun": False, "options": {},
    }}


async def run(url: str, context: ssl.SSLContext, images: list[str], namespace: str, rate: float,
              duration: float) -> Results:
    """Send ``rate`` reviews a second for ``duration`` seconds; wait for every answer."""
    results = Results()
    timeout = aiohttp.ClientTimeout(total=REVIEW_TIMEOUT)
    connector = aiohttp.TCPConnector(ssl=context, limit=256)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.monotonic()
        pending = []
        for index in range(int(rate * duration)):
            due = start + index / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            results.lags.append(max(0.0, time.monotonic() - due))
            body = review(images[index % len(images)], namespace, index)
            pending.append(asyncio.create_task(_post(session, url, body, results)))
            results.sent += 1
        await asyncio.gather(*pending)
        results.elapsed = time.monotonic() - start
    return results


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any], results: Results) -> None:
    sent = time.monotonic()
    try:
        async with session.post(url, json=body) as reply:
            text = await reply.text()
            status = reply.status
    except TimeoutError:
        results.error("timeout")
        return
    except aiohttp.ClientError as exc:
        results.error(type(exc).__name__)
        return
    results.latencies.append(time.monotonic() - sent)
    _judge_answer(status, text, body["request"]["uid"], results)


def _judge_answer(status: int, text: str, uid: str, results: Results) -> None:
    if status != 200:
        results.error(f"http {status}")
        return
    try:
        response = json.loads(text)["response"]
        allowed = response["allowed"]
        matches = response["uid"] == uid and isinstance(allowed, bool)
    except (ValueError, KeyError, TypeError):
        matches = False
    if not matches:
        results.error("not an answer to the review")
    elif allowed:
        results.allowed += 1
    else:
        results.denied += 1


def report(summary: dict[str, Any], args: argparse.Namespace) -> str:
    latency, lag = summary["latency_ms"], summary["send_lag_ms"]
    lines = [
        f"{args.rate:g} rps for {args.duration:g} s to {args.url}: {summary['sent']} sent "
        f"({summary['rate_achieved']} rps achieved), {summary['answered']} answered "
        f"({summary['allowed']} allowed, {summary['denied']} denied), {summary['errors']} errors "
        f"{summary['error_kinds'] or ''}".rstrip(),
        f"latency ms: p50 {latency.get('p50')}, p99 {latency.get('p99')}, max {latency.get('max')}",
        f"generator send lag ms: p50 {lag.get('p50')}, p99 {lag.get('p99')}, max {lag.get('max')}",
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the webhook, e.g. https://localhost:9443/validate")
    parser.add_argument("--ca", type=pathlib.Path, help="CA that signed the webhook's certificate (ca.crt)")
    parser.add_argument("--image", action="append", required=True,
                        help="a container image for the reviewed pods (repeatable: used in turn)")
    parser.add_argument("--namespace", default="default", help="namespace of the reviewed pods")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds (default 30)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    context = ssl.create_default_context(cafile=str(args.ca) if args.ca else None)
    results = asyncio.run(run(args.url, context, args.image, args.namespace, args.rate, args.duration))
    summary = {"rate": args.rate, "duration": args.duration, **results.summary()}
    print(report(summary, args))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
