"""The emulator's command-line options, importable without loading boto3 or botocore.

``python -m imagescan.emulator`` and ``imagescan emulator`` take the same options. The ``imagescan`` command
builds every sub-command's parser on each start, so the options live here, away from ``server``'s imports,
and are declared on the sub-command itself (argparse's REMAINDER cannot pass on arguments that start with
``-`` from a sub-command).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the emulator's options on ``parser``."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4599, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pipelines", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--fail-rate", type=float, default=0.0, help="fraction of calls failing with throttling/unavailable errors"
    )
    parser.add_argument("--account-id", default="123456789012", help="the default account (and every caller's "
                        "without --sts-endpoint-url)")
    parser.add_argument("--region", default="us-east-1", help="the default region")
    parser.add_argument("--no-inspector", action="store_true", help="start with Inspector disabled")
    parser.add_argument(
        "--sts-endpoint-url", help="resolve callers' access keys to accounts with STS GetCallerIdentity here "
        "(e.g. moto's server); default: every caller is --account-id"
    )
    parser.add_argument(
        "--inspector-delay-s", type=float, default=0.0,
        help="seconds Inspector stays ENABLING/DISABLING after Enable/Disable (default 0: immediate)",
    )
    parser.add_argument(
        "--events-queue-url", help="send the EventBridge events of builds and scans to this SQS queue (one message "
        "per event, its body the event, as an EventBridge rule with an SQS target delivers it)",
    )
    parser.add_argument("--events-endpoint-url", help="the SQS endpoint of --events-queue-url (e.g. moto's "
                        "server); default: AWS's, with the default credentials")
    parser.add_argument("--events-region", help="the region SQS calls are signed for (default: --region)")
    parser.add_argument(
        "--rate-limit-tps", type=float, help="answer calls past this rate per account, region and operation with "
        "the service's throttling error (default: no limit)",
    )
    parser.add_argument("--rate-limit-burst", type=float,
                        help="calls a rate-limit bucket holds (default: one second's worth, --rate-limit-tps)")
