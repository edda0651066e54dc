"""The ``imagescan`` command: run the operator, try it in a sandbox, write the CRDs, serve the AWS emulator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pathlib
import sys
from typing import TYPE_CHECKING

from imagescan.aws import clients as aws_clients
from imagescan.emulator import options as emulator_options
from imagescan.reconcile import findings as summary

if TYPE_CHECKING:
    from imagescan import leader
    from imagescan.admission import server as admission_server
    from imagescan.handlers import runtime


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.command(args) or 0)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagescan", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the operator against the current kube-context")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    run.add_argument("--region", help="AWS region for pipelines given by name (default: the boto3 chain)")
    run.add_argument("--aws-endpoint-url", help="send Image Builder, Inspector and ECR calls here, e.g. an emulator "
                     "(default: botocore's AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_IMAGEBUILDER...); not AssumeRole")
    run.add_argument("--sts-endpoint-url", help="assume IAM roles (spec.roleArn) through this STS endpoint "
                     "(default: botocore's AWS_ENDPOINT_URL_STS / the default region's STS endpoint)")
    run.add_argument("--workers", type=int, default=10, help="threads for AWS calls (default 10)")
    run.add_argument("--tick", type=float, default=10.0,
                     help="seconds between policy judgements and activation due-checks (default 10); "
                          "ImagePipelines wait until due")
    run.add_argument("--http-port", type=int, help="serve /healthz (liveness), /readyz (readiness) and /metrics "
                     "(Prometheus) over plain HTTP on this port (default: off)")
    run.add_argument("--http-addr", default="0.0.0.0", help="address for --http-port (default 0.0.0.0)")
    run.add_argument("--log-format", choices=["text", "json"], default="text",
                     help="text (default), or json: one object per line with timestamp, level, logger, message "
                     "and the object's kind, namespace and name")
    push = run.add_argument_group("push intake (EventBridge -> SQS, deploy/aws/); off unless --events-queue-url")
    push.add_argument("--events-queue-url", help="read Image Builder and Inspector events from this SQS queue and "
                      "refresh the pipelines they concern within seconds")
    push.add_argument("--events-safety-net", default="6h", metavar="DURATION",
                      help="while the queue answers, read each object at least this often (or on its own, longer, "
                      "intervals), e.g. 6h (default 6h; 1m..168h)")
    push.add_argument("--sqs-endpoint-url", help="read the queue through this SQS endpoint (default: botocore's "
                      "AWS_ENDPOINT_URL_SQS / the queue's region)")
    webhook = run.add_argument_group("admission webhook (FindingsPolicy Warn / Deny); off unless --webhook-port")
    webhook.add_argument("--webhook-port", type=int, help="serve the validating webhook over HTTPS on this port")
    webhook.add_argument("--webhook-addr", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    webhook.add_argument("--webhook-cert", help="serving certificate, PEM (e.g. cert-manager's tls.crt); "
                         "re-read when it changes. Default: a self-signed one generated at start-up")
    webhook.add_argument("--webhook-key", help="private key of --webhook-cert, PEM (tls.key)")
    webhook.add_argument("--webhook-dns-name", action="append", default=[], metavar="NAME",
                         help="a name the self-signed certificate is valid for (repeatable; default "
                         "imagescan-webhook.imagescan-system.svc[.cluster.local])")
    webhook.add_argument("--webhook-cert-dir", help="where to write the self-signed certificate, key and ca.crt "
                         "(default: a new temporary folder)")
    election = run.add_argument_group(
        "leader election (several replicas: every one answers admission, the Lease holder alone reconciles)")
    election.add_argument("--leader-election", action="store_true",
                          help="hold a coordination.k8s.io Lease to reconcile; without it, reconcile everything")
    election.add_argument("--leader-election-namespace", default=os.environ.get("POD_NAMESPACE") or "imagescan-system",
                          help="the Lease's namespace (default $POD_NAMESPACE, else imagescan-system)")
    election.add_argument("--leader-election-id", default="imagescan-operator",
                          help="the Lease's name (default imagescan-operator)")
    for flag, default, meaning in (
            ("lease-duration", 15.0, "others wait this long after the last renewal before taking over"),
            ("renew-deadline", 10.0, "the holder stops (exits) when it has not renewed for this long"),
            ("retry-period", 2.0, "how often the holder renews and the others try")):
        election.add_argument(f"--leader-election-{flag}", type=float, default=default, metavar="SECONDS",
                              help=f"{meaning} (default {default:g})")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(command=_run)

    crds = commands.add_parser("crds", help="write the CRDs generated from the models")
    crds.add_argument("--output-dir", default="crds", type=pathlib.Path, help="where to write (default crds/)")
    crds.add_argument("--chart-dir", default=pathlib.Path("deploy/helm/imagescan-operator/crds"), type=pathlib.Path,
                      help="the Helm chart's copy, written too when the folder exists "
                      "(default deploy/helm/imagescan-operator/crds)")
    crds.add_argument("--check", action="store_true", help="only check that the files are up to date")
    crds.set_defaults(command=_crds)

    sandbox = commands.add_parser("sandbox", help="try it: emulated AWS + Kubernetes API + the operator, one process")
    sandbox.add_argument("--port", type=int, default=4599, help="AWS emulator port (default 4599; 0: any free port)")
    sandbox.add_argument("--api-port", type=int, default=8001, help="Kubernetes API port (default 8001; 0: any)")
    sandbox.add_argument("--seed", type=int, default=1, help="seed of the demo pipelines and findings (default 1)")
    sandbox.add_argument("--pipelines", type=int, default=6, help="demo pipelines to seed (default 6)")
    sandbox.add_argument("--latency-ms", type=float, default=0.0, help="added latency per AWS call")
    sandbox.add_argument("--fail-rate", type=float, default=0.0,
                         help="share of AWS calls that fail with throttling / 503 (0..1)")
    sandbox.add_argument("--no-operator", action="store_true", help="serve only the APIs; run `imagescan run` yourself")
    sandbox.add_argument("--no-events", action="store_true",
                         help="no push intake: the emulator sends no events, the operator polls only")
    sandbox.add_argument("--kubeconfig", type=pathlib.Path, default=pathlib.Path("imagescan-sandbox.kubeconfig"),
                         help="where to write the kubeconfig (default ./imagescan-sandbox.kubeconfig)")
    sandbox.add_argument("--examples", type=pathlib.Path, default=pathlib.Path("examples"),
                         help="folder of manifests to apply (default ./examples; absent: one per demo pipeline)")
    sandbox.set_defaults(command=_sandbox)

    findings = commands.add_parser(
        "findings", help="explore findings like the Image Builder console: all, by vulnerability/pipeline/image",
        description="Findings of ImagePipelines in the cluster (default) or of the whole AWS account "
        "(--source aws). Also installed as kubectl-imagescan: `kubectl imagescan findings ...`.",
    )
    findings.add_argument("--by", choices=["vulnerability", "pipeline", "image"],
                          help="group like the console (default: all findings, one row each)")
    findings.add_argument("--severity", action="append", default=[], type=str.upper, metavar="SEVERITY",
                          choices=summary.SEVERITIES,
                          help="only findings of this severity (repeatable, any case); with --by pipeline/image: "
                          "only rows that have such findings")
    where = findings.add_mutually_exclusive_group()
    where.add_argument("-n", "--namespace", help="namespace to list (default: the kubeconfig context's, else default)")
    where.add_argument("-A", "--all-namespaces", action="store_true", help="list every namespace")
    findings.add_argument("--pipeline", action="append", default=[], metavar="NAME",
                          help="only this ImagePipeline (with --source aws: Image Builder pipeline) name (repeatable)")
    findings.add_argument("--detail", action="store_true",
                          help="each finding as the console's finding panel: title, Inspector score against CVSS "
                          "with Inspector's adjustments and reasons, packages, fix, related ids, dates, links; "
                          "with -o json / yaml: every field (status.findings.top[]'s structure)")
    findings.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table",
                          help="table (default), or json / yaml rows for scripts")
    findings.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    findings.add_argument("--source", choices=["cluster", "aws"], default="cluster",
                          help="cluster: ImagePipeline status (default); aws: ask Image Builder for the whole account")
    findings.add_argument("--region", help="AWS region with --source aws (default: AWS_REGION / the boto3 chain)")
    findings.add_argument("--aws-endpoint-url", help="Image Builder endpoint with --source aws, e.g. an emulator "
                          "(default: botocore's AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_IMAGEBUILDER)")
    findings.set_defaults(command=_findings)

    emulator = commands.add_parser("emulator", help="serve the Image Builder + Inspector emulator")
    emulator_options.add_arguments(emulator)
    emulator.set_defaults(command=_emulator)
    return parser


def _run(args: argparse.Namespace) -> int:
    from imagescan import logs, runner

    logs.configure(args.log_format, verbose=args.verbose)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # kopf's kubeconfig login reads it when it logs in
    election = election_settings(args)
    with contextlib.suppress(KeyboardInterrupt):
        if election is None:
            asyncio.run(runner.run(run_config(args)))
        else:
            asyncio.run(runner.run_elected(run_config(args), election))
    return 0


def election_settings(args: argparse.Namespace) -> leader.Settings | None:
    """The Lease to hold, with --leader-election; the pod's name (downward API) is the holder's identity."""
    from imagescan import leader

    if not args.leader_election:
        return None
    try:
        return leader.Settings(
            identity=leader.identity_from_environment(), namespace=args.leader_election_namespace,
            name=args.leader_election_id, lease_duration=args.leader_election_lease_duration,
            renew_deadline=args.leader_election_renew_deadline, retry_period=args.leader_election_retry_period,
        )
    except ValueError as exc:
        raise SystemExit(f"imagescan run: {exc}") from None


def run_config(args: argparse.Namespace) -> runtime.Config:
    """The operator's settings from `imagescan run`'s flags."""
    from imagescan import probes
    from imagescan.handlers import runtime

    return runtime.Config(
        aws=aws_clients.Settings(
            default_region=args.region, endpoint_url=args.aws_endpoint_url,
            sts_endpoint_url=args.sts_endpoint_url, sqs_endpoint_url=args.sqs_endpoint_url, workers=args.workers,
        ),
        tick=args.tick,
        namespaces=tuple(args.namespace),
        clusterwide=not args.namespace,
        http=probes.Settings(port=args.http_port, addr=args.http_addr) if args.http_port is not None else None,
        webhook=_webhook_settings(args),
        events=_events_settings(args),
    )


def _events_settings(args: argparse.Namespace) -> runtime.Events | None:
    from imagescan.handlers import runtime
    from imagescan.models import imagepipeline

    if not args.events_queue_url:
        return None
    try:
        safety_net = imagepipeline.parse_duration(imagepipeline.bounded_interval(args.events_safety_net))
    except ValueError as exc:
        raise SystemExit(f"imagescan run: --events-safety-net: {exc}") from None
    return runtime.Events(queue_url=args.events_queue_url, safety_net=safety_net)


def _webhook_settings(args: argparse.Namespace) -> admission_server.Settings | None:
    from imagescan.admission import server

    if args.webhook_port is None:
        return None
    if bool(args.webhook_cert) != bool(args.webhook_key):
        raise SystemExit("imagescan run: --webhook-cert and --webhook-key go together")
    return server.Settings(
        port=args.webhook_port, addr=args.webhook_addr, cert=args.webhook_cert, key=args.webhook_key,
        dns_names=tuple(args.webhook_dns_name) or server.SERVICE_NAMES, cert_dir=args.webhook_cert_dir,
    )


def _crds(args: argparse.Namespace) -> int:
    from imagescan import crdgen
    from imagescan.models import resources

    # The Helm chart installs CRDs from its own crds/ folder: a copy, written and checked with crds/.
    directories = [args.output_dir, *([args.chart_dir] if args.chart_dir.is_dir() else [])]
    if args.check:
        stale = [
            str(directory / f"{r.plural}.imagescan.io.yaml") for directory in directories for r in resources.ALL
            if not (directory / f"{r.plural}.imagescan.io.yaml").is_file()
            or (directory / f"{r.plural}.imagescan.io.yaml").read_text() != crdgen.render(r)
        ]
        if stale:
            print(f"out of date: {', '.join(stale)}; run `imagescan crds`", file=sys.stderr)
            return 1
        return 0
    for directory in directories:
        for path in crdgen.write_all(directory):
            print(path)
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    # The embedded API server's dependencies are the `sandbox` extra, absent from the production image.
    try:
        from imagescan import sandbox
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("kmock", "celpy"):
            raise
        print(f"error: `imagescan sandbox` needs the sandbox extra ({exc.name} is not installed): "
              "pip install 'imagescan-operator[sandbox]'", file=sys.stderr)
        return 2

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return sandbox.run(sandbox.Options(
        port=args.port, api_port=args.api_port, seed=args.seed, pipelines=args.pipelines,
        latency_ms=args.latency_ms, fail_rate=args.fail_rate, operator=not args.no_operator,
        kubeconfig=args.kubeconfig, examples=args.examples, events=not args.no_events,
    ))


def _findings(args: argparse.Namespace) -> int:
    from imagescan import views

    if args.detail and args.by:
        print("error: --detail shows findings one by one; leave out --by", file=sys.stderr)
        return 2
    view = "detail" if args.detail else args.by or "findings"
    severities = views.normalize_severities(args.severity)
    try:
        if args.source == "aws":
            client = views.aws_client(args.region, args.aws_endpoint_url)
            shown = views.build_aws(view, client, severities=severities, names=args.pipeline)
        else:
            items = views.read_cluster(args.kubeconfig, args.namespace, args.all_namespaces, args.pipeline)
            entries = views.parse_entries(items, warn=lambda text: print(f"warning: {text}", file=sys.stderr))
            shown = views.build(view, entries=entries, severities=severities, namespaced=args.all_namespaces)
    except views.ReadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(views.render(shown, args.output))
    return 0


def _emulator(args: argparse.Namespace) -> int:
    from imagescan.emulator import server

    return server.serve(args)


if __name__ == "__main__":
    sys.exit(main())
