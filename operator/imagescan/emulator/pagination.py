"""Opaque ``nextToken`` handling shared by the List operations.

Tokens encode an offset plus a fingerprint of the query that produced them; replaying a token against different
filters is rejected with ``InvalidPaginationTokenException`` just as AWS rejects foreign tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from imagescan.emulator import errors

T = TypeVar("T")
DEFAULT_PAGE = 25


def fingerprint(*parts: Any) -> str:
    """A short stable digest of the query a token belongs to."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode(), usedforsecurity=False).hexdigest()[:16]


def page(items: Sequence[T], params: dict[str, Any], query: str) -> tuple[Sequence[T], str | None]:
    """Slice ``items`` for this request; returns the page and the token for the next one (or None)."""
    offset = _offset(params.get("nextToken"), query)
    size = int(params.get("maxResults") or DEFAULT_PAGE)
    end = offset + size
    token = _encode(end, query) if end < len(items) else None
    return items[offset:end], token


def _encode(offset: int, query: str) -> str:
    raw = json.dumps({"o": offset, "q": query}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _offset(token: str | None, query: str) -> int:
    if token is None:
        return 0
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset, owner = int(decoded["o"]), decoded["q"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise errors.ApiError("InvalidPaginationTokenException", "The nextToken is not valid.") from exc
    if owner != query or offset < 0:
        raise errors.ApiError("InvalidPaginationTokenException", "The nextToken does not belong to this request.")
    return offset
