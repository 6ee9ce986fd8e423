"""Run one lifecycle flow and die (os._exit) right after its N-th task run completes.

Used by test_crash.py only: the crash is injected here, in the child, by giving every task of
flows.tasks an on_completion hook. Production code has no crash hooks. To pay the imports once,
this process imports everything, then forks one child per kill point (before any thread, client
or event loop exists) and reports each child's exit code as JSON.

    python crash_child.py <deliver|modify|decommission> <SERVICE-ID> <N>=<sqlite file> ...
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from prefect import Task

import flows
from allocation.intent import Bandwidth, IpPackage
from flows import tasks

KILLED = 17


def run_and_die(transition: str, identifier: str, after: int) -> None:
    completed = 0

    def die(task: object, task_run: object, state: object) -> None:
        nonlocal completed
        completed += 1
        if completed == after:
            os._exit(KILLED)

    for name, value in list(vars(tasks).items()):
        if isinstance(value, Task):
            setattr(tasks, name, value.with_options(on_completion=[die]))
    changes = {"bandwidth": Bandwidth.G10, "ip_package": IpPackage.MEDIUM} if transition == "modify" else {}
    # No architect here: the review is left open and the run stops polling at once.
    asyncio.run(
        flows.run_transition(
            transition,  # type: ignore[arg-type]
            identifier,
            review=flows.Review(timeout_seconds=0),
            **changes,  # type: ignore[arg-type]
        )
    )


def main() -> None:
    transition, identifier, *jobs = sys.argv[1:]
    exits: dict[str, int] = {}
    for job in jobs:
        after, db = job.split("=", 1)
        pid = os.fork()
        if pid == 0:
            try:
                os.environ["FACTORY_DB"] = db
                run_and_die(transition, identifier, int(after))
            finally:
                os._exit(0)  # ran to the end without being killed
        _, status = os.waitpid(pid, 0)
        exits[after] = os.waitstatus_to_exitcode(status)
    print(json.dumps(exits))


if __name__ == "__main__":
    main()
