"""AWS failures as the operator's own errors.

botocore reports everything as ``ClientError`` with a code string; the reconciler needs to know one thing
about a failure: must the spec (or the AWS side) change for it to clear (Terminal), or will it clear by
itself (Recoverable)? Each class answers that and carries the condition reason shown to the user. A role
that could not be assumed is reported as such (AssumeRoleFailed, naming the role) whichever call found out:
botocore assumes lazily, so the failure comes out of an Image Builder or Inspector call.
"""

from __future__ import annotations

import re

from botocore import exceptions as botocore_exceptions

from imagescan.aws import credentials, retries


class AwsError(Exception):
    """A failed AWS call, with what the user should read about it."""

    terminal: bool = False
    reason: str = "AWSError"

    def __init__(self, message: str, *, code: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation

    @property
    def message(self) -> str:
        return str(self.args[0])


class NotFound(AwsError):
    terminal = True
    reason = "PipelineNotFound"


class AccessDenied(AwsError):
    terminal = True
    reason = "AccessDenied"


class InvalidRequest(AwsError):
    terminal = True
    reason = "InvalidRequest"


class DependencyMissing(AwsError):
    """Image scanning needs Amazon Inspector to be active for the resource type first."""

    reason = "InspectorNotEnabled"


class Throttled(AwsError):
    reason = "Throttled"


class Unavailable(AwsError):
    reason = "AWSUnavailable"


class Conflict(AwsError):
    reason = "Conflict"


class InvalidSpec(AwsError):
    """botocore refused the request before sending it, for a value the spec gave: only a spec change helps."""

    terminal = True
    reason = "InvalidSpec"


class AssumeRoleFailed(AwsError):
    """The operator could not assume the role: Terminal when STS refused (the role's trust policy, its
    ExternalId condition or the operator's own IAM permissions must change), Recoverable when STS was
    throttling, failing or unreachable."""

    reason = "AssumeRoleFailed"

    def __init__(self, message: str, *, terminal: bool, code: str = "") -> None:
        super().__init__(message, code=code, operation="AssumeRole")
        self.terminal = terminal


# Request parameters that come from the spec, and the spec field each comes from, so the message names
# what the user wrote. Longest first: the first prefix that matches wins.
_SPEC_FIELDS = (
    ("imageScanningConfiguration.ecrConfiguration.", "spec.scanning.ecr."),
    ("imageScanningConfiguration.imageScanningEnabled", "spec.scanning.enabled"),
    ("imagePipelineArn", "spec.pipelineArn"),
)
_PARAMETER = re.compile(r"parameter ([A-Za-z0-9_.\[\]]+)")


_BY_CODE: dict[str, type[AwsError]] = {
    "ResourceNotFoundException": NotFound,
    "AccessDeniedException": AccessDenied,
    "ForbiddenException": AccessDenied,
    "UnauthorizedOperation": AccessDenied,
    "UnrecognizedClientException": AccessDenied,
    "InvalidClientTokenId": AccessDenied,
    "ExpiredTokenException": AccessDenied,
    "InvalidParameterException": InvalidRequest,
    "InvalidParameterValueException": InvalidRequest,
    "InvalidParameterCombinationException": InvalidRequest,
    "InvalidRequestException": InvalidRequest,
    "ValidationException": InvalidRequest,
    "ClientException": InvalidRequest,
    "ResourceDependencyException": DependencyMissing,
    "CallRateLimitExceededException": Throttled,
    "ThrottlingException": Throttled,
    "TooManyRequestsException": Throttled,
    "ServiceException": Unavailable,
    "ServiceUnavailableException": Unavailable,
    "InternalServerException": Unavailable,
    "ResourceInUseException": Conflict,
    "IdempotentParameterMismatchException": Conflict,
}


def from_client_error(exc: botocore_exceptions.ClientError) -> AwsError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")) or code
    operation = exc.operation_name
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    cls = _BY_CODE.get(code) or (Unavailable if status >= 500 else InvalidRequest)
    return cls(f"{operation}: {code}: {message}", code=code, operation=operation)


def from_exception(exc: Exception) -> AwsError:
    """Any exception out of a boto3 call, translated; unknown ones are re-raised as they are."""
    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, credentials.AssumeRoleError):
        return from_assume_role(exc.role_arn, exc.__cause__ or exc)
    if isinstance(exc, botocore_exceptions.ClientError) and exc.operation_name == "AssumeRole":
        return from_assume_role(None, exc)
    if isinstance(exc, botocore_exceptions.ClientError):
        return from_client_error(exc)
    if isinstance(exc, botocore_exceptions.NoCredentialsError | botocore_exceptions.PartialCredentialsError):
        err: AwsError = AccessDenied(f"no AWS credentials: {exc}", code="NoCredentials")
        err.reason = "NoCredentials"
        return err
    if isinstance(exc, botocore_exceptions.ParamValidationError):
        return from_param_validation(exc)
    if isinstance(exc, botocore_exceptions.BotoCoreError):
        # Connection failures, timeouts and the like: the network or the endpoint, not the request.
        return Unavailable(f"{type(exc).__name__}: {exc}", code=type(exc).__name__)
    raise exc


def from_assume_role(role_arn: str | None, cause: BaseException) -> AssumeRoleFailed:
    """A failed AssumeRole (botocore raises it from the first call signed with the role, or from the call
    that found the credentials due for refresh); botocore's standard mode has already retried it."""
    role = f" {role_arn}" if role_arn else ""
    if isinstance(cause, botocore_exceptions.ClientError):
        error = cause.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        recoverable = code in _STS_TRANSIENT or code in retries.THROTTLING_CODES or status >= 500
        detail = f"{code}: {error.get('Message') or code}"
    else:
        code = type(cause).__name__
        # Connection errors and timeouts clear by themselves; missing source credentials or a request botocore
        # refused to send (a session name or external id STS does not accept) do not.
        recoverable = isinstance(cause, botocore_exceptions.BotoCoreError) and not isinstance(
            cause, _SOURCE_OR_REQUEST_ERRORS,
        )
        detail = f"{code}: {cause}"
    if recoverable:
        hint = ""
    elif isinstance(cause, _NO_SOURCE_CREDENTIALS):
        hint = " (the operator has no AWS credentials of its own to assume it with)"
    else:
        hint = " (the role's trust policy, its ExternalId condition or the operator's IAM permissions must allow it)"
    return AssumeRoleFailed(f"AssumeRole{role}: {detail}{hint}", terminal=not recoverable, code=code)


# STS's own transient codes (its throttling code is "Throttling", not Image Builder's).
_STS_TRANSIENT = frozenset({"Throttling", "IDPCommunicationError", "ServiceUnavailable", "InternalFailure"})
_NO_SOURCE_CREDENTIALS = (botocore_exceptions.NoCredentialsError, botocore_exceptions.PartialCredentialsError)
_SOURCE_OR_REQUEST_ERRORS = (*_NO_SOURCE_CREDENTIALS, botocore_exceptions.ParamValidationError)


def from_param_validation(exc: botocore_exceptions.ParamValidationError) -> AwsError:
    """botocore's client-side validation (a BotoCoreError, but no network trouble): retrying sends the same
    request again, so it is Terminal. InvalidSpec, naming the spec field, when a parameter comes from the
    spec; else InvalidRequest (the pipeline's own fields, which the spec cannot fix)."""
    report = str(exc.kwargs.get("report") or exc)
    text = "; ".join(line.strip() for line in report.splitlines() if line.strip())
    from_spec = any(_spec_field(p) for p in _PARAMETER.findall(text))
    text = _PARAMETER.sub(lambda m: _spec_field(m.group(1)) or m.group(0), text)
    cls: type[AwsError] = InvalidSpec if from_spec else InvalidRequest
    return cls(f"refused before sending: {text}", code="ParamValidationError")


def _spec_field(parameter: str) -> str | None:
    for prefix, field in _SPEC_FIELDS:
        if parameter.startswith(prefix):
            return field + parameter[len(prefix):]
    return None
