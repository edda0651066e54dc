"""boto3 clients built once and shared by every worker thread, in the operator's account or through a role.

Clients are thread-safe, sessions are not: every client is created under one lock and cached per (service,
region, role) for the operator's lifetime. The connection pool is sized to the worker count so that threads
do not queue for connections.

Without a role a client signs with the operator's own credentials (the default boto3 chain). With a
``Role`` it signs with the role's credentials, which botocore assumes at the first call and refreshes
before they expire (``credentials``): one credentials object per role, shared by every region and service,
so however many objects use a role there is one AssumeRole per role and credential lifetime. That is also
why a Role's session name (``session_name_for``) names the namespace that asked, not the object. A role's
clients come from a botocore session of their own (a session holds one set of credentials), sharing one
loader so service models are read once. STS is called in the default region, where the operator runs
(regional endpoints), at ``Settings.sts_endpoint_url`` or wherever botocore resolves it; never at
``Settings.endpoint_url``, which is the Image Builder / Inspector emulator.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
from collections.abc import Callable
from typing import Any, Literal

import boto3
from botocore import config as botocore_config
from botocore import credentials as botocore_credentials
from botocore import loaders as botocore_loaders
from botocore import session as botocore_session

from imagescan.aws import credentials, parsing, retries

Role = credentials.Role
session_name_for = credentials.session_name_for
Service = Literal["imagebuilder", "ecr", "inspector2", "sqs"]


@dataclasses.dataclass(frozen=True)
class Settings:
    default_region: str | None = None
    """Region for pipelines named without one; None: the boto3 chain (AWS_REGION, profile...)."""
    endpoint_url: str | None = None
    """Point every client here (an emulator); None: botocore's own resolution (AWS_ENDPOINT_URL_* too).
    Not STS: AssumeRole goes to ``sts_endpoint_url``."""
    sts_endpoint_url: str | None = None
    """Where to assume roles; None: botocore's own resolution (AWS_ENDPOINT_URL_STS, regional endpoints)."""
    sqs_endpoint_url: str | None = None
    """Where the events queue is read; None: botocore's own resolution (AWS_ENDPOINT_URL_SQS, the region's)."""
    workers: int = 10
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


class Clients:
    """A cache of boto3 clients and their throttle gates, per (service, region, role)."""

    def __init__(
        self,
        settings: Settings,
        session: boto3.session.Session | None = None,
        *,
        clock: Callable[[], datetime.datetime] | None = None,
        instrument: Callable[[Any], None] | None = None,
    ) -> None:
        self.settings = settings
        self._instrument = instrument
        """Called with every new client, STS's too, to hook its event system (metrics)."""
        self._session = session or boto3.session.Session(region_name=settings.default_region)
        parsing.install(self._session._session)
        self._clock = clock  # botocore's own (local time) unless a test moves it
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str, Role | None], Any] = {}  # botocore clients are dynamically typed
        self.gates: dict[tuple[str, str, Role | None], retries.ThrottleGate] = {}
        self._role_sessions: dict[Role, botocore_session.Session] = {}
        self._assumed: dict[Role, botocore_credentials.Credentials] = {}
        self._loader: botocore_loaders.Loader | None = None

    @property
    def default_region(self) -> str:
        region = self.settings.default_region or self._session.region_name
        if not region:
            raise ValueError("no AWS region: set AWS_REGION, --region, or spec.region / spec.pipelineArn")
        return str(region)

    def imagebuilder(self, region: str | None = None, role: Role | None = None) -> Any:
        return self._get("imagebuilder", region or self.default_region, role)

    def ecr(self, region: str | None = None, role: Role | None = None) -> Any:
        return self._get("ecr", region or self.default_region, role)

    def inspector2(self, region: str | None = None, role: Role | None = None) -> Any:
        return self._get("inspector2", region or self.default_region, role)

    def sqs(self, region: str | None = None) -> Any:
        """The events queue's client: always the operator's own credentials (the queue is the operator's, not a
        tenant's), at ``sqs_endpoint_url``."""
        return self._get("sqs", region or self.default_region, None)

    def assumed_credentials(self, role: Role) -> botocore_credentials.Credentials:
        """The role's credentials, shared by all its clients (nothing is fetched until a client signs)."""
        with self._lock:
            self._role_session(role)
            return self._assumed[role]

    def _get(self, service: Service, region: str, role: Role | None) -> Any:
        key = (service, region, role)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                endpoint = self.settings.sqs_endpoint_url if service == "sqs" else self.settings.endpoint_url
                if role is None:
                    client = self._session.client(
                        service, region_name=region, endpoint_url=endpoint, config=self._config(),
                    )
                else:
                    client = self._role_session(role, region).create_client(
                        service, region_name=region, endpoint_url=endpoint, config=self._config(),
                    )
                gate = retries.ThrottleGate()
                retries.install(client, gate)
                if self._instrument is not None:
                    self._instrument(client)
                self._clients[key] = client
                self.gates[key] = gate
            return client

    def _config(self) -> botocore_config.Config:
        return botocore_config.Config(
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=max(10, self.settings.workers),
            connect_timeout=self.settings.connect_timeout,
            read_timeout=self.settings.read_timeout,
        )

    def _role_session(self, role: Role, region: str | None = None) -> botocore_session.Session:
        """A botocore session whose only credentials are the role's (call with the lock held)."""
        found = self._role_sessions.get(role)
        if found is not None:
            return found
        sts_region = self.settings.default_region or self._session.region_name or region
        assumed = credentials.assumed(role, self._own_credentials, self._sts_client_creator(sts_region), self._clock)
        profile = self._session.profile_name
        session = botocore_session.Session(profile=profile if profile in self._session.available_profiles else None)
        if self._loader is None:
            self._loader = botocore_loaders.create_loader()
        session.register_component("data_loader", self._loader)
        session.register_component("credential_provider", botocore_credentials.CredentialResolver([_Fixed(assumed)]))
        parsing.install(session)
        self._role_sessions[role] = session
        self._assumed[role] = assumed
        return session

    def _own_credentials(self) -> botocore_credentials.Credentials | None:
        """The default chain's credentials (refreshing ones for IRSA / Pod Identity), shared with the clients
        without a role; the source of every AssumeRole."""
        with self._lock:
            return self._session.get_credentials()

    def _sts_client_creator(self, region: str | None) -> credentials.ClientCreator:
        """What the fetcher calls, at each refresh, for an STS client signed with the source credentials."""

        def create(
            _service: str, *, aws_access_key_id: str, aws_secret_access_key: str, aws_session_token: str | None,
        ) -> Any:
            with self._lock:  # sessions are not thread-safe; a refresh runs in whichever worker signs
                client = self._session.client(
                    "sts", region_name=region, endpoint_url=self.settings.sts_endpoint_url, config=self._config(),
                    aws_access_key_id=aws_access_key_id, aws_secret_access_key=aws_secret_access_key,
                    aws_session_token=aws_session_token,
                )
            if self._instrument is not None:
                self._instrument(client)
            return client

        return create

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
            self.gates.clear()
            self._role_sessions.clear()
            self._assumed.clear()


class _Fixed(botocore_credentials.CredentialProvider):
    """A credential chain of one link: the role's credentials object."""

    METHOD = credentials.METHOD

    def __init__(self, loaded: botocore_credentials.Credentials) -> None:
        super().__init__()
        self._loaded = loaded

    def load(self) -> botocore_credentials.Credentials:
        return self._loaded
