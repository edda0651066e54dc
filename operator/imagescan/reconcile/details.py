"""Every finding of an image build, in compact form, for policy rules the status's top-N cannot answer.

Exemptions, the fix filter and the score limit are per-finding rules; a pipeline's status lists only its
worst findings. When a verdict needs the rest, the operator lists the image build's findings once (one
filter, the largest pages the API allows) and keeps four fields per finding, cached per build and its
counts: new findings change the counts and so the key; an unchanged build is never read twice.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

from imagescan.aws import findings as aws_findings


@dataclasses.dataclass(frozen=True)
class Detail:
    vulnerability_id: str
    severity: str
    inspector_score: float | None
    fix_available: str | None


Key = tuple[str, str, str]  # (filter name, value, counts fingerprint)


class DetailCache:
    """Thread-safe; lookups are cheap enough for the admission path, fetches happen in worker threads."""

    def __init__(self, max_entries: int = 5000) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Key, tuple[Detail, ...]] = {}
        self.max_entries = max_entries
        self.fetches = 0

    def get(self, key: Key) -> tuple[Detail, ...] | None:
        return self._entries.get(key)

    def fetch(self, client: Any, key: Key) -> tuple[Detail, ...]:
        """The findings for ``key``, listed from AWS unless already cached."""
        cached = self.get(key)
        if cached is not None:
            return cached
        filter_name, value, _ = key
        found = tuple(_compact(raw) for raw in aws_findings.iter_findings(client, filter_name, value))
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))  # oldest first: builds age out
            self._entries[key] = found
            self.fetches += 1
        return found


def _compact(raw: dict[str, Any]) -> Detail:
    details = raw.get("packageVulnerabilityDetails") or {}
    return Detail(
        vulnerability_id=str(details.get("vulnerabilityId") or raw.get("title") or "unknown"),
        severity=str(raw.get("severity") or "UNTRIAGED"),
        inspector_score=raw.get("inspectorScore"),
        fix_available=raw.get("fixAvailable"),
    )


def counts_fingerprint(counts: Sequence[int]) -> str:
    return ",".join(str(c) for c in counts)
