"""``imagescan run`` with one addition for the soak suite: the number of live asyncio tasks, every 10 s.

The operator has no debug output for its task count, and a leak of tasks (a timer or watcher per object that
never ends) would not show in RSS for a long time. This wrapper runs the very same entry point as
``imagescan run`` (``runner.run`` with ``cli.run_config``) on an event loop it owns and appends
``<monotonic seconds> <tasks>`` lines to the file named by ``IMAGESCAN_TASKS_FILE``.
Usage: ``python -m tests.reliability.counted_run run --kubeconfig ... -n ns``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time

from imagescan import cli, runner

PERIOD_S = 10.0


async def _count(path: str) -> None:
    while True:
        with open(path, "a") as out:
            out.write(f"{time.monotonic():.1f} {len(asyncio.all_tasks())}\n")
        await asyncio.sleep(PERIOD_S)


async def _main(args: argparse.Namespace) -> None:
    counter = asyncio.create_task(_count(os.environ["IMAGESCAN_TASKS_FILE"]))
    try:
        await runner.run(cli.run_config(args))
    finally:
        counter.cancel()


def main(argv: list[str] | None = None) -> int:
    args = cli.parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
