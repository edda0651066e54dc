"""The exception every emulated operation raises to produce an AWS error response.

Handlers raise ``ApiError`` with the error *code* only; the HTTP status is taken from the service model's error
shape (``error.httpStatusCode``) when the response is written, so statuses never drift from what botocore expects.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An AWS-style error: ``code`` goes to ``x-amzn-ErrorType``, ``message`` to the JSON body."""

    def __init__(
        self, code: str, message: str, *, status: int | None = None, headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status  # None -> look up in the service model
        self.headers = headers or {}  # modeled header members, e.g. Inspector's ThrottlingException Retry-After
        self.extra = extra  # additional modeled members, e.g. Inspector's ValidationException.reason


def not_found(message: str) -> ApiError:
    """Shortcut for the most common lookup failure."""
    return ApiError("ResourceNotFoundException", message)


def invalid_request(message: str) -> ApiError:
    """Shortcut for requests that break the modeled constraints."""
    return ApiError("InvalidRequestException", message)


def invalid_value(parameter: str, detail: str) -> ApiError:
    """Mirror Image Builder's wording for a bad parameter value (seen in real responses)."""
    return ApiError(
        "InvalidParameterValueException",
        f"The value supplied for parameter '{parameter}' is not valid. {detail}".strip(),
    )
