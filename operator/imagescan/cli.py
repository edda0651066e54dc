"""The ``imagescan`` command: run the operator, write the CRDs, serve the AWS emulator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pathlib
import sys

from imagescan.aws import clients as aws_clients


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return int(args.command(args) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagescan", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the operator against the current kube-context")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    run.add_argument("--region", help="AWS region for pipelines given by name (default: the boto3 chain)")
    run.add_argument("--aws-endpoint-url", help="send every AWS call here, e.g. an emulator "
                     "(default: botocore's AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_IMAGEBUILDER)")
    run.add_argument("--workers", type=int, default=10, help="threads for AWS calls (default 10)")
    run.add_argument("--tick", type=float, default=10.0, help="seconds between due-checks per object (default 10)")
    run.add_argument("--liveness", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(command=_run)

    crds = commands.add_parser("crds", help="write the CRDs generated from the models")
    crds.add_argument("--output-dir", default="crds", type=pathlib.Path, help="where to write (default crds/)")
    crds.add_argument("--check", action="store_true", help="only check that the files are up to date")
    crds.set_defaults(command=_crds)

    emulator = commands.add_parser("emulator", help="serve the Image Builder + Inspector emulator", add_help=False)
    emulator.add_argument("rest", nargs=argparse.REMAINDER)
    emulator.set_defaults(command=_emulator)
    return parser


def _run(args: argparse.Namespace) -> int:
    from imagescan import runner
    from imagescan.handlers import runtime

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    config = runtime.Config(
        aws=aws_clients.Settings(
            default_region=args.region, endpoint_url=args.aws_endpoint_url, workers=args.workers,
        ),
        tick=args.tick,
        namespaces=tuple(args.namespace),
        clusterwide=not args.namespace,
        liveness_endpoint=args.liveness,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runner.run(config))
    return 0


def _crds(args: argparse.Namespace) -> int:
    from imagescan import crdgen
    from imagescan.models import resources

    if args.check:
        stale = [
            r.plural for r in resources.ALL
            if not (args.output_dir / f"{r.plural}.imagescan.io.yaml").is_file()
            or (args.output_dir / f"{r.plural}.imagescan.io.yaml").read_text() != crdgen.render(r)
        ]
        if stale:
            print(f"out of date: {', '.join(stale)}; run `imagescan crds`", file=sys.stderr)
            return 1
        return 0
    for path in crdgen.write_all(args.output_dir):
        print(path)
    return 0


def _emulator(args: argparse.Namespace) -> int:
    from imagescan.emulator import server

    return int(server.main(args.rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
