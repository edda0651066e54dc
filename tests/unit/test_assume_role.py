"""Clients that assume IAM roles: real boto3 clients over HTTP, moto's STS and the project's emulator.

moto answers AssumeRole and records every one it answered; the emulator serves Image Builder / Inspector /
ECR and, through a small wrapper, shows which access key each request was signed with.
"""

from __future__ import annotations

import datetime
import http.server
import re
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from botocore import exceptions as botocore_exceptions

from imagescan import cli
from imagescan.aws import clients, credentials, errors, pipelines
from imagescan.emulator import server
from tests.support.moto import Moto

ROLE_A = "arn:aws:iam::210987654321:role/imagescan-reader"
ROLE_B = "arn:aws:iam::345678901234:role/imagescan-reader"
_ACCESS_KEY = re.compile(r"Credential=([^/]+)/")


class SigningEmulator(server.Emulator):
    """The emulator, also noting the access key of every request it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.access_keys: list[str] = []

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> server.Response:
        found = _ACCESS_KEY.search(headers.get("authorization", ""))
        if found:
            self.access_keys.append(found.group(1))
        return super().handle(method, target, headers, body)


class Clock:
    """botocore's time fetcher, moved forward by the test."""

    def __init__(self) -> None:
        self.ahead = datetime.timedelta()

    def __call__(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC) + self.ahead


@pytest.fixture
def emulator() -> Iterator[SigningEmulator]:
    emu = SigningEmulator()
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def sts(moto_server: Moto) -> Moto:
    moto_server.reset()
    return moto_server


def _clients(emulator: server.Emulator, sts_url: str | None, **kwargs: Any) -> clients.Clients:
    settings = clients.Settings(
        default_region="us-east-1", endpoint_url=emulator.endpoint_url, sts_endpoint_url=sts_url,
    )
    return clients.Clients(settings, **kwargs)


def _role(arn: str = ROLE_A, namespace: str | None = "team-a", external_id: str | None = None) -> clients.Role:
    return clients.Role(arn, clients.session_name_for(namespace), external_id)


# --- signing with the role --------------------------------------------------------------------------------


def test_a_role_client_signs_with_the_assumed_credentials(emulator: SigningEmulator, sts: Moto) -> None:
    built = _clients(emulator, sts.url)
    built.imagebuilder(role=_role(external_id="tenant-a-secret")).list_image_pipelines()

    [assumed] = sts.assumed_roles()
    assert assumed["role_arn"] == ROLE_A
    assert assumed["session_name"] == "imagescan@team-a"
    assert assumed["external_id"] == "tenant-a-secret"
    assert emulator.access_keys == [assumed["access_key_id"]]


def test_without_external_id_none_is_sent(emulator: SigningEmulator, sts: Moto) -> None:
    _clients(emulator, sts.url).imagebuilder(role=_role()).list_image_pipelines()
    [assumed] = sts.assumed_roles()
    assert assumed["external_id"] is None


def test_no_role_signs_with_the_default_chain_and_assumes_nothing(emulator: SigningEmulator, sts: Moto) -> None:
    _clients(emulator, sts.url).imagebuilder().list_image_pipelines()
    assert emulator.access_keys == ["testing"]  # AWS_ACCESS_KEY_ID of the test environment
    assert sts.assumed_roles() == []


def test_building_a_role_client_assumes_nothing_until_it_calls(emulator: SigningEmulator, sts: Moto) -> None:
    built = _clients(emulator, sts.url)
    built.imagebuilder(role=_role())
    built.inspector2("eu-west-1", _role())
    assert sts.assumed_roles() == []


def test_one_assume_role_per_role_whatever_the_calls_regions_and_services(
    emulator: SigningEmulator, sts: Moto,
) -> None:
    built = _clients(emulator, sts.url)
    role = _role()
    for _ in range(5):
        built.imagebuilder(role=role).list_image_pipelines()
    built.imagebuilder("eu-west-1", role).list_image_pipelines()
    built.inspector2(role=clients.Role(ROLE_A, "imagescan@team-a")).batch_get_account_status()  # an equal Role
    with pytest.raises(errors.AwsError, match="RepositoryNotFound"):  # signed and answered: no such repository
        _describe_images(built.ecr("eu-west-1", role))

    [assumed] = sts.assumed_roles()
    assert assumed["region_name"] == "us-east-1"  # STS in the default region, whichever region the client has
    assert set(emulator.access_keys) == {assumed["access_key_id"]}
    assert len(emulator.access_keys) == 8
    assert built.imagebuilder(role=role) is built.imagebuilder("us-east-1", role)  # one client, reused
    assert len(built.gates) == 4  # and a throttle gate per client


def test_different_roles_get_different_credentials(emulator: SigningEmulator, sts: Moto) -> None:
    built = _clients(emulator, sts.url)
    built.imagebuilder(role=_role(ROLE_A)).list_image_pipelines()
    built.imagebuilder(role=_role(ROLE_B, "team-b")).list_image_pipelines()
    built.imagebuilder(role=_role(ROLE_A, "team-b")).list_image_pipelines()  # same role, another tenant

    assumed = {(a["role_arn"], a["session_name"]): a["access_key_id"] for a in sts.assumed_roles()}
    assert set(assumed) == {(ROLE_A, "imagescan@team-a"), (ROLE_B, "imagescan@team-b"), (ROLE_A, "imagescan@team-b")}
    assert len(set(assumed.values())) == 3
    assert emulator.access_keys == list(assumed.values())
    assert built.imagebuilder(role=_role(ROLE_A)) is not built.imagebuilder(role=_role(ROLE_B))


def test_concurrent_first_calls_assume_the_role_once(emulator: SigningEmulator, sts: Moto) -> None:
    built = _clients(emulator, sts.url)
    regions = ["us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2"] * 4
    threads = [
        threading.Thread(target=lambda r=region: built.imagebuilder(r, _role()).list_image_pipelines())
        for region in regions
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(sts.assumed_roles()) == 1
    assert len(emulator.access_keys) == len(regions)


def test_credentials_are_assumed_again_before_they_expire(emulator: SigningEmulator, sts: Moto) -> None:
    clock = Clock()
    built = _clients(emulator, sts.url, clock=clock)
    client = built.imagebuilder(role=_role())
    client.list_image_pipelines()
    clock.ahead = datetime.timedelta(minutes=30)  # moto's credentials last an hour: not due yet
    client.list_image_pipelines()
    assert len(sts.assumed_roles()) == 1

    clock.ahead = datetime.timedelta(minutes=55)  # inside botocore's mandatory refresh window
    client.list_image_pipelines()

    first, second = sts.assumed_roles()
    assert emulator.access_keys == [first["access_key_id"]] * 2 + [second["access_key_id"]]
    assert first["access_key_id"] != second["access_key_id"]
    assert built.assumed_credentials(_role()).method == "assume-role"  # the object every client of the role shares


def test_sts_endpoint_from_botocore_own_resolution(
    emulator: SigningEmulator, sts: Moto, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.url)
    _clients(emulator, None).imagebuilder(role=_role()).list_image_pipelines()
    assert len(sts.assumed_roles()) == 1


# --- failures ---------------------------------------------------------------------------------------------


class _RefusingSts(http.server.BaseHTTPRequestHandler):
    """STS refusing every AssumeRole as AWS does when the trust policy does not allow the caller."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = (
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>"
            "<Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/operator is not authorized "
            f"to perform: sts:AssumeRole on resource: {ROLE_A}</Message></Error>"
            "<RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>"
        ).encode()
        self.send_response(403)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def refusing_sts() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusingSts)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_refused_assume_role_is_terminal_and_names_the_role(
    emulator: SigningEmulator, refusing_sts: str,
) -> None:
    client = _clients(emulator, refusing_sts).imagebuilder(role=_role())
    with pytest.raises(errors.AwsError) as raised:
        pipelines.find_arn(client, "anything")
    assert isinstance(raised.value, errors.AssumeRoleFailed)
    assert raised.value.reason == "AssumeRoleFailed" and raised.value.terminal
    assert raised.value.code == "AccessDenied" and raised.value.operation == "AssumeRole"
    assert raised.value.message.startswith(f"AssumeRole {ROLE_A}: AccessDenied")
    assert "trust policy" in raised.value.message
    assert emulator.access_keys == []  # nothing reached Image Builder


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_sts_is_recoverable(emulator: SigningEmulator) -> None:
    client = _clients(emulator, f"http://127.0.0.1:{_closed_port()}").imagebuilder(role=_role())
    with pytest.raises(errors.AwsError) as raised:
        pipelines.find_arn(client, "anything")
    assert isinstance(raised.value, errors.AssumeRoleFailed) and not raised.value.terminal
    assert raised.value.code == "EndpointConnectionError"
    assert ROLE_A in raised.value.message


def test_a_session_name_sts_refuses_is_terminal(emulator: SigningEmulator, sts: Moto) -> None:
    client = _clients(emulator, sts.url).imagebuilder(role=clients.Role(ROLE_A, "x" * 65))
    with pytest.raises(errors.AwsError) as raised:
        pipelines.find_arn(client, "anything")
    assert isinstance(raised.value, errors.AssumeRoleFailed) and raised.value.terminal
    assert raised.value.code == "ValidationError"  # moto's answer, as STS's: RoleSessionName is 2-64 characters
    assert sts.assumed_roles() == []


def test_no_credentials_of_its_own_fails_the_first_call_not_the_client(
    emulator: SigningEmulator, sts: Moto, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = _clients(emulator, sts.url).imagebuilder(role=_role())
    with pytest.raises(errors.AwsError) as raised:
        pipelines.find_arn(client, "anything")
    assert isinstance(raised.value, errors.AssumeRoleFailed) and raised.value.terminal
    assert raised.value.code == "NoCredentialsError" and ROLE_A in raised.value.message
    assert "no AWS credentials of its own" in raised.value.message
    assert sts.assumed_roles() == []


def _assume_role_error(code: str, status: int) -> botocore_exceptions.ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": f"{code} from STS"}, "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return botocore_exceptions.ClientError(response, "AssumeRole")


@pytest.mark.parametrize(("code", "status", "terminal"), [
    ("AccessDenied", 403, True),
    ("InvalidClientTokenId", 403, True),
    ("RegionDisabledException", 403, True),
    ("ValidationError", 400, True),
    ("Throttling", 400, False),
    ("InternalFailure", 500, False),
    ("ServiceUnavailable", 503, False),
])
def test_assume_role_client_errors(code: str, status: int, terminal: bool) -> None:
    cause = _assume_role_error(code, status)
    wrapped = credentials.AssumeRoleError(role_arn=ROLE_A, error_msg=str(cause))
    wrapped.__cause__ = cause
    for raised, names_role in ((wrapped, True), (cause, False)):  # ours, or botocore's own straight from STS
        error = errors.from_exception(raised)
        assert isinstance(error, errors.AssumeRoleFailed)
        assert (error.reason, error.terminal, error.code) == ("AssumeRoleFailed", terminal, code)
        assert (ROLE_A in error.message) is names_role


def test_assume_role_without_source_credentials_is_terminal() -> None:
    wrapped = credentials.AssumeRoleError(role_arn=ROLE_A, error_msg="no credentials")
    wrapped.__cause__ = botocore_exceptions.NoCredentialsError()
    error = errors.from_exception(wrapped)
    assert isinstance(error, errors.AssumeRoleFailed) and error.terminal


def test_other_operations_keep_their_own_mapping() -> None:
    denied = botocore_exceptions.ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetImagePipeline",
    )
    error = errors.from_exception(denied)
    assert type(error) is errors.AccessDenied and error.reason == "AccessDenied"


# --- session names ----------------------------------------------------------------------------------------

_STS_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")


def test_session_name_names_the_namespace_or_the_cluster() -> None:
    assert clients.session_name_for("team-a") == "imagescan@team-a"
    assert clients.session_name_for(None) == "imagescan@_cluster"
    assert clients.session_name_for("cluster") != clients.session_name_for(None)


def test_long_namespaces_are_shortened_without_colliding() -> None:
    longest = "n" * 63  # a namespace is a DNS label: at most 63 characters, no dots
    other = "n" * 62 + "m"
    names = {clients.session_name_for(ns) for ns in (longest, other, "n" * 54, "n" * 55)}
    assert len(names) == 4
    for name in names:
        assert _STS_SESSION_NAME.fullmatch(name), name
    assert clients.session_name_for("n" * 54) == "imagescan@" + "n" * 54  # fits: kept as it is
    assert "." in clients.session_name_for("n" * 55)  # no namespace has a dot: shortened names stand apart


def test_a_session_name_sts_refuses_is_not_made() -> None:
    with pytest.raises(ValueError, match="namespace"):
        clients.session_name_for("not a namespace")


# --- the command line --------------------------------------------------------------------------------------


def test_run_sts_endpoint_flag_reaches_the_settings() -> None:
    args = cli.parser().parse_args(["run", "--aws-endpoint-url", "http://emulator:4599",
                                    "--sts-endpoint-url", "http://moto:5000"])
    settings = cli.run_config(args).aws
    assert settings.sts_endpoint_url == "http://moto:5000"
    assert settings.endpoint_url == "http://emulator:4599"


def test_run_sts_endpoint_defaults_to_botocore_resolution() -> None:
    assert cli.run_config(cli.parser().parse_args(["run"])).aws.sts_endpoint_url is None


def _describe_images(client: Any) -> None:
    try:
        client.describe_images(repositoryName="not-there", imageIds=[{"imageTag": "latest"}])
    except Exception as exc:
        raise errors.from_exception(exc) from None
