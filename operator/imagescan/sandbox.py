"""`imagescan sandbox`: the whole product in one process, with no cluster and no AWS account.

Most people evaluating the operator have neither a spare EKS cluster nor an AWS account with Image Builder
pipelines. The sandbox starts the Image Builder + Inspector emulator seeded with demo pipelines, the embedded
Kubernetes API server (the same one the test suite uses), and the operator; applies the examples; waits until
they are Ready; and prints the kubectl commands that work against it, until Ctrl-C.

Push intake runs as in production (README, "Push"): the emulator sends the EventBridge events AWS would (a build
finished, its findings changed) into an SQS queue it also serves, and the operator long-polls that queue, so a
new build shows in status within seconds, with no timer involved.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import pathlib
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

from imagescan import GROUP, VERSION, apiserver, crdgen, runner
from imagescan.aws import clients as aws_clients
from imagescan.emulator import server as emulator_server
from imagescan.handlers import runtime
from imagescan.models import resources

PLURAL = resources.IMAGE_PIPELINE.plural
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"
T = TypeVar("T")


class SandboxError(Exception):
    """Something a person can fix (a port in use, a broken example); the message says what."""


@dataclasses.dataclass(frozen=True)
class Options:
    port: int = 4599
    """Port of the AWS emulator (0: any free port)."""
    api_port: int = 8001
    """Port of the Kubernetes API server (0: any free port)."""
    seed: int = 1
    pipelines: int = 6
    latency_ms: float = 0.0
    fail_rate: float = 0.0
    operator: bool = True
    kubeconfig: pathlib.Path = pathlib.Path("imagescan-sandbox.kubeconfig")
    examples: pathlib.Path | None = pathlib.Path("examples")
    ready_timeout: float = 60.0
    tick: float = 2.0
    events: bool = True
    """Push intake: the emulator's events through its SQS queue (False: the operator polls only)."""


EVENTS_QUEUE = "imagescan-events"
EVENTS_DEAD_LETTERS = "imagescan-events-dlq"


class Sandbox:
    """The emulator, the API server and the operator, started and stopped together."""

    def __init__(self, options: Options, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.out = out
        self.emulator: emulator_server.Emulator | None = None
        self.api: apiserver.ApiServer | None = None
        self.operator: runner.InThread | None = None
        self.queue_url: str | None = None

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def start(self) -> None:
        self.emulator = self._step("AWS emulator (Image Builder + Inspector)", self._start_emulator,
                                   lambda e: f"at {e.endpoint_url}: {len(e.world.pipeline_arns())} demo pipelines")
        if self.options.events:
            self.queue_url = self._step("events queue (EventBridge -> SQS)", self._start_events,
                                        lambda url: f"{url}: the emulator sends build and findings events here")
        self.api = self._step("Kubernetes API server", self._start_api, lambda a: f"at {a.url}")
        self._step("CRDs", self._install_crds, lambda plurals: ", ".join(plurals))
        if self.options.operator:
            self.operator = self._step("operator", self._start_operator, lambda _: "watching all namespaces")
        names = self._step("example ImagePipelines", self._apply_examples, lambda n: ", ".join(n))
        if self.options.operator and names:
            self._step(f"waiting for {len(names)} ImagePipelines to be Ready", lambda: self._wait_ready(names),
                       lambda pending: pending or "all Ready")
            self.say("")
            self.say(self.table(wide=True))
        self.say("")
        self.say(self.instructions())

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        if self.api is not None:
            self.api.stop()
        if self.emulator is not None:
            self.emulator.stop()

    def _step(self, what: str, action: Callable[[], T], describe: Callable[[T], str]) -> T:
        started = time.monotonic()
        self.say(f"• {what} …")
        result = action()
        self.say(f"  done in {time.monotonic() - started:.1f}s: {describe(result)}")
        return result

    def _start_emulator(self) -> emulator_server.Emulator:
        options = self.options
        emu = emulator_server.Emulator(seed=options.seed, pipelines=options.pipelines,
                                       latency_s=options.latency_ms / 1000.0)
        if options.fail_rate > 0:
            emu.inject_faults(rate=options.fail_rate,
                              codes=("CallRateLimitExceededException", "ServiceUnavailableException"))
        _bind(lambda: emu.start(port=options.port), options.port, "--port")
        return emu

    def _start_events(self) -> str:
        """The queue an EventBridge rule would fill (deploy/aws/: dead-letter queue after 5 receives, 60 s
        visibility), served by the emulator, which sends its events there."""
        assert self.emulator is not None
        world = self.emulator.world
        dead_letters = world.sqs.create(world.account_id, world.region, EVENTS_DEAD_LETTERS)
        dead_letters_arn = world.sqs.attributes(dead_letters, world.region, ["QueueArn"])["QueueArn"]
        url = world.sqs.create(world.account_id, world.region, EVENTS_QUEUE, {
            "VisibilityTimeout": "60", "ReceiveMessageWaitTimeSeconds": "20",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_letters_arn, "maxReceiveCount": 5}),
        })
        self.emulator.send_events_to(url, endpoint_url=self.emulator.endpoint_url, region=world.region)
        return url

    def _start_api(self) -> apiserver.ApiServer:
        api = apiserver.ApiServer(port=self.options.api_port)
        _bind(api.start, self.options.api_port, "--api-port")
        api.write_kubeconfig(self.options.kubeconfig)
        return api

    def _install_crds(self) -> list[str]:
        assert self.api is not None
        for resource in resources.ALL:
            self.api.apply(crdgen.crd(resource))
        return [f"{r.plural}.{GROUP}" for r in resources.ALL]

    def _start_operator(self) -> runner.InThread:
        assert self.emulator is not None
        # The in-process operator finds the API server through KUBECONFIG, like `imagescan run` does; the
        # emulator checks no signatures, but botocore still wants credentials to sign with.
        os.environ["KUBECONFIG"] = str(self.options.kubeconfig.resolve())
        for name, value in (("AWS_ACCESS_KEY_ID", "sandbox"), ("AWS_SECRET_ACCESS_KEY", "sandbox")):
            os.environ[name] = value
        config = runtime.Config(
            aws=aws_clients.Settings(default_region=self.emulator.world.region,
                                     endpoint_url=self.emulator.endpoint_url,
                                     sqs_endpoint_url=self.emulator.endpoint_url if self.queue_url else None),
            tick=self.options.tick, clusterwide=True,
            events=runtime.Events(queue_url=self.queue_url) if self.queue_url else None,
        )
        return runner.InThread(config).start()

    def _apply_examples(self) -> list[str]:
        assert self.api is not None and self.emulator is not None
        directory = self.options.examples
        if directory is not None and directory.is_dir():
            files = sorted(directory.glob("*.yaml"))
            for path in files:
                try:
                    self.api.apply_yaml(path)
                except Exception as exc:
                    raise SandboxError(f"{path} could not be applied: {exc}") from exc
        else:
            self._apply_demo_objects()
        return [str(o["metadata"]["name"]) for o in self.api.objects(GROUP, VERSION, PLURAL, "default")]

    def _apply_demo_objects(self) -> None:
        """No examples folder (installed from a wheel): one ImagePipeline per demo pipeline."""
        assert self.api is not None and self.emulator is not None
        for pipeline in self.emulator.world.pipelines():
            self.api.apply({
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "ImagePipeline",
                "metadata": {"name": pipeline["name"], "namespace": "default"},
                "spec": {"pipelineArn": pipeline["arn"]},
            })

    def _wait_ready(self, names: list[str]) -> str:
        """'' once all are Ready; after the timeout, which are not and why (the sandbox keeps running)."""
        deadline = time.monotonic() + self.options.ready_timeout
        while True:
            pending = {name: reason for name, reason in self._ready_states(names).items() if reason != "True"}
            if not pending:
                return ""
            if time.monotonic() > deadline:
                listing = ", ".join(f"{name} ({reason})" for name, reason in sorted(pending.items()))
                return f"not Ready yet: {listing}"
            time.sleep(0.2)

    def _ready_states(self, names: list[str]) -> dict[str, str]:
        assert self.api is not None
        states = {name: "no status yet" for name in names}
        for obj in self.api.objects(GROUP, VERSION, PLURAL, "default"):
            for condition in obj.get("status", {}).get("conditions", []):
                if condition["type"] == "Ready":
                    value = "True" if condition["status"] == "True" else condition["reason"]
                    states[obj["metadata"]["name"]] = value
        return states

    def table(self, wide: bool = False) -> str:
        """`kubectl get imagepipelines [-o wide]`, from the API server's own Table answer."""
        assert self.api is not None
        request = urllib.request.Request(
            f"{self.api.url}/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}",
            headers={"Accept": TABLE_ACCEPT},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            table = json.load(response)
        columns = [c for c in table["columnDefinitions"] if wide or not c.get("priority")]
        indexes = [table["columnDefinitions"].index(c) for c in columns]
        rows = [[_cell(row["cells"][i]) for i in indexes] for row in table["rows"]]
        header = [c["name"].upper() for c in columns]
        widths = [max(len(x) for x in column) for column in zip(header, *rows, strict=True)]
        return "\n".join("   ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
                         for line in [header, *rows])

    def instructions(self) -> str:
        assert self.api is not None and self.emulator is not None
        kubeconfig = self.options.kubeconfig
        kubectl = f"kubectl --kubeconfig {kubeconfig}"
        lines = [
            f"Kubernetes API: {self.api.url}   kubeconfig: {kubeconfig}",
            f"AWS emulator:   {self.emulator.endpoint_url}   (account {self.emulator.world.account_id}, "
            f"region {self.emulator.world.region}, seed {self.options.seed})",
            "",
            "Try:",
            f"  {kubectl} get imagepipelines -o wide",
            f"  {kubectl} describe imagepipeline web-ami",
            f"  {kubectl} get imagepipeline web-ami -o yaml",
            f"  {kubectl} apply -f examples/imagepipeline-ami.yaml",
            f"  {kubectl} explain imagepipeline.spec",
            f"  {kubectl} get findingspolicies        # examples/findingspolicy.yaml judged against the pipelines",
            f"  {kubectl} get inspectoractivations    # examples/inspectoractivation.yaml: Inspector on, per type",
            f"  imagescan findings --kubeconfig {kubeconfig} --by vulnerability",
        ]
        if self.queue_url is not None:
            lines += self._push_instructions(kubectl)
        if not self.options.operator:
            lines += [
                "",
                "The operator is not running (--no-operator). Start it in another terminal:",
                f"  AWS_ACCESS_KEY_ID=sandbox AWS_SECRET_ACCESS_KEY=sandbox imagescan run --kubeconfig {kubeconfig} "
                f"--aws-endpoint-url {self.emulator.endpoint_url} --region {self.emulator.world.region}"
                + (f" --events-queue-url {self.queue_url} --sqs-endpoint-url {self.emulator.endpoint_url}"
                   if self.queue_url else ""),
            ]
        lines += ["", "Ctrl-C stops everything."]
        return "\n".join(lines)


    def _push_instructions(self, kubectl: str) -> list[str]:
        """How to watch a new build reach status within seconds: the emulator builds it (its control API) and
        sends the events AWS would."""
        assert self.emulator is not None
        arns = self.emulator.world.pipeline_arns()
        pipeline = next((arn for arn in arns if arn.endswith("/web-ami")), arns[0] if arns else None)
        if pipeline is None:
            return []
        request = json.dumps({"pipelineArn": pipeline, "findings": {"CRITICAL": 3, "HIGH": 2}})
        return [
            "",
            "Push: a new build of web-ami with 3 criticals, in status within seconds (no timer involved):",
            f"  {kubectl} get imagepipelines -w &",
            f"  curl -s -X POST {self.emulator.endpoint_url}/_emulator/images -d '{request}'",
        ]


def _cell(value: Any) -> str:
    """A Table cell as kubectl prints it (the server already turned dates into ages)."""
    if value is None:
        return "<none>"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _bind(start: Callable[[], Any], port: int, flag: str) -> None:
    try:
        start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SandboxError(f"port {port} is in use: pick another with {flag} (0 picks a free one)") from exc
        raise


def run(options: Options, out: TextIO = sys.stdout) -> int:
    """Start everything, serve until Ctrl-C or SIGTERM, shut down cleanly."""
    sandbox = Sandbox(options, out)
    stopped = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        sandbox.start()
        while not stopped.wait(0.5):
            pass
    except SandboxError as exc:
        print(f"imagescan sandbox: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.say("stopping …")
        sandbox.stop()
        sandbox.say("stopped")
    return 0
