"""The emulator's own control endpoints, for tests and benchmarks that run it in another process.

AWS paths never start with ``/_emulator/``, so these cannot shadow an operation (LocalStack keeps its
controls under ``/_localstack/`` the same way). Everything here is also reachable in-process through
``server.Emulator``; this only makes it reachable over HTTP.

- ``GET  /_emulator/calls``                  → ``{"GetImagePipeline": 12, ...}``
- ``POST /_emulator/calls/reset``
- ``POST /_emulator/latency``  ``{"ms": 50}``
- ``POST /_emulator/pipelines`` ``{"names": [...], "container": [bools] | bool, "scanningEnabled": bool,
  "findings": int | {"CRITICAL": n, ...}, "accountId": "...", "region": "..."}`` → ``{"arns": [...]}``
- ``POST /_emulator/identities`` ``{"accessKeyId": "AKIA...", "accountId": "210987654321"}``
- ``POST /_emulator/inspector`` ``{"accountId": "...", "region": "...", "states": {"ECR": "SUSPENDED"}}``
- ``POST /_emulator/inspector/delay`` ``{"s": 0.5}``
- ``POST /_emulator/inspector/fail`` ``{"accountId", "region", "resourceType", "errorCode", "message"}``
- ``POST /_emulator/inspector/heal`` ``{"accountId", "region", "resourceType"}``
- ``POST /_emulator/images`` ``{"pipelineArn": "...", "findings": int | {"CRITICAL": n, ...}}`` → ``{"imageArn"}``:
  a build completes (and its EventBridge events are sent)
- ``POST /_emulator/findings`` ``{"imageArn": "...", "findings": {"CRITICAL": 3, ...}}`` → ``{"counts": {...}}``:
  the image's findings are replaced (CVE Detected is sent)
- ``POST /_emulator/events`` ``{"queueUrl": "...", "endpointUrl": "...", "region": "..."}``: send events to SQS;
  ``DELETE /_emulator/events`` stops; ``GET /_emulator/events`` →
  ``{"sent": {detail-type: n}, "failed": {...}, "pending": n, "queueUrl": ...}``
- ``POST /_emulator/events/burst`` ``{"imageArns": [...], "count": n}`` → ``{"queued": n}``
- ``POST /_emulator/events/flush`` ``{"timeoutS": 30}`` → ``{"idle": bool, ...GET's counts}``
- ``POST /_emulator/rate-limit`` ``{"tps": 5, "burst": 5, "operations": {"GetImage": {"tps": 2, "burst": 2}}}``
  (``tps`` null: only the overrides); ``DELETE`` turns it off; ``GET`` → the settings
- ``GET  /_emulator/throttles`` → ``{"GetImagePipeline": 3, ...}`` (calls refused by the rate limit)

``region`` defaults to the emulator's own everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imagescan.emulator import server

PREFIX = "/_emulator/"
Response = tuple[int, dict[str, str], bytes]


def handle(emulator: server.Emulator, method: str, path: str, body: bytes) -> Response:
    routes: dict[tuple[str, str], Callable[[server.Emulator, Any], Any]] = {
        ("GET", "calls"): lambda emu, _: dict(emu.calls),
        ("POST", "calls/reset"): _reset_calls,
        ("POST", "latency"): _set_latency,
        ("POST", "pipelines"): _add_pipelines,
        ("POST", "identities"): _map_identity,
        ("POST", "inspector"): _set_inspector,
        ("POST", "inspector/delay"): _set_inspector_delay,
        ("POST", "inspector/fail"): _fail_inspector_type,
        ("POST", "inspector/heal"): _heal_inspector_type,
        ("POST", "images"): _add_image,
        ("POST", "findings"): _set_findings,
        ("GET", "events"): lambda emu, _: emu.event_counts(),
        ("POST", "events"): _send_events,
        ("DELETE", "events"): lambda emu, _: emu.stop_events(),
        ("POST", "events/burst"): _burst,
        ("POST", "events/flush"): _flush_events,
        ("GET", "rate-limit"): lambda emu, _: emu.rate_limits.settings(),
        ("POST", "rate-limit"): _set_rate_limit,
        ("DELETE", "rate-limit"): lambda emu, _: emu.set_rate_limit(None),
        ("GET", "throttles"): lambda emu, _: emu.throttles,
    }
    action = routes.get((method, path.removeprefix(PREFIX)))
    if action is None:
        return _json(404, {"message": f"no emulator control {method} {path}"})
    try:
        payload = json.loads(body or b"{}")
        return _json(200, action(emulator, payload) or {})
    except (ValueError, KeyError, TypeError) as exc:
        return _json(400, {"message": f"bad control request: {exc}"})


def _reset_calls(emulator: server.Emulator, _: Any) -> None:
    emulator.reset_calls()


def _set_latency(emulator: server.Emulator, payload: dict[str, Any]) -> None:
    emulator.latency_s = float(payload["ms"]) / 1000.0


def _add_pipelines(emulator: server.Emulator, payload: dict[str, Any]) -> dict[str, list[str]]:
    names = list(payload["names"])
    container = payload.get("container", False)
    kinds = container if isinstance(container, list) else [bool(container)] * len(names)
    scanning = bool(payload.get("scanningEnabled"))
    findings = payload.get("findings", 20)
    arns = [
        emulator.world.add_pipeline(
            name=name, container=bool(kind), scanning_enabled=scanning, findings=findings,
            account_id=payload.get("accountId"), region=payload.get("region"),
        )
        for name, kind in zip(names, kinds, strict=True)
    ]
    return {"arns": arns}


def _map_identity(emulator: server.Emulator, payload: dict[str, Any]) -> None:
    emulator.identities[str(payload["accessKeyId"])] = str(payload["accountId"])


def _set_inspector(emulator: server.Emulator, payload: dict[str, Any]) -> None:
    emulator.world.set_inspector(str(payload["accountId"]), dict(payload["states"]), region=payload.get("region"))


def _set_inspector_delay(emulator: server.Emulator, payload: dict[str, Any]) -> None:
    emulator.inspector_delay_s = float(payload["s"])


def _fail_inspector_type(emulator: server.Emulator, payload: dict[str, Any]) -> None:
    emulator.fail_inspector_type(
        str(payload["accountId"]), _region(emulator, payload), str(payload["resourceType"]),
        str(payload["errorCode"]), str(payload["message"]),
    )


def _heal_inspector_type(emulator: server.Emulator, payload: dict[str, Any]) -> None:
    emulator.heal_inspector_type(str(payload["accountId"]), _region(emulator, payload), str(payload["resourceType"]))


def _add_image(emulator: server.Emulator, payload: dict[str, Any]) -> dict[str, str]:
    return {"imageArn": emulator.world.add_image(str(payload["pipelineArn"]), payload.get("findings"))}


def _set_findings(emulator: server.Emulator, payload: dict[str, Any]) -> dict[str, Any]:
    return {"counts": emulator.world.set_findings(str(payload["imageArn"]), payload["findings"])}


def _send_events(emulator: server.Emulator, payload: dict[str, Any]) -> None:
    emulator.send_events_to(str(payload["queueUrl"]), payload.get("endpointUrl"), payload.get("region"))


def _burst(emulator: server.Emulator, payload: dict[str, Any]) -> dict[str, int]:
    return {"queued": emulator.emit_burst([str(arn) for arn in payload["imageArns"]], int(payload["count"]))}


def _flush_events(emulator: server.Emulator, payload: dict[str, Any]) -> dict[str, Any]:
    idle = emulator.flush_events(float(payload.get("timeoutS", 30.0)))
    return {"idle": idle, **emulator.event_counts()}


def _set_rate_limit(emulator: server.Emulator, payload: dict[str, Any]) -> None:
    overrides = {
        str(name): (float(rule["tps"]), rule.get("burst")) for name, rule in payload.get("operations", {}).items()
    }
    tps = payload.get("tps")
    emulator.set_rate_limit(float(tps) if tps is not None else None, payload.get("burst"), overrides)


def _region(emulator: server.Emulator, payload: dict[str, Any]) -> str:
    return str(payload.get("region") or emulator.world.region)


def _json(status: int, payload: Any) -> Response:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()
