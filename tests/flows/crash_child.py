"""Run one transition and die (os._exit) right after its N-th step completes.

Used by test_crash.py only: the crash is injected here, in the child, by wrapping the executor the
frame runs every step through (Prefect's task executor, or the plain runner's call). Production code
has no crash hooks. To pay the imports once, this process imports everything, then forks one child
per kill point (before any thread, client or event loop exists) and reports each exit code as JSON.

    python crash_child.py <prefect|plain> <deliver|modify|decommission> <SERVICE-ID> <N>=<sqlite file> ...

With ``infrahub`` in place of the sqlite file, the plain runner works on the live Infrahub that
INFRAHUB_ADDRESS names (tests/integration/test_crash_on_infrahub.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from allocation import runner
from allocation.backends.embedded import EmbeddedInventory
from allocation.backends.infrahub import InfrahubInventory
from allocation.intent import Bandwidth, IpPackage
from allocation.inventory import Inventory
from allocation.settings import InfrahubSettings
from allocation.steps import Changes, Step, Work
from allocation.transitions import TRANSITIONS
from flows import engine
from flows.decommission import decommission
from flows.deliver import deliver
from flows.modify import modify
from flows.params import DecommissionParams, DeliverParams, LocalWait, ModifyParams

KILLED = 17
MODIFY_TO = Changes(bandwidth=Bandwidth.G10, ip_package=IpPackage.MEDIUM)


def dying(execute: runner.Execute, after: int) -> runner.Execute:
    completed = 0

    async def execute_then_maybe_die(step: Step, work: Work) -> Work:
        nonlocal completed
        done = await execute(step, work)
        completed += 1
        if completed == after:
            os._exit(KILLED)
        return done

    return execute_then_maybe_die


async def through_prefect(transition: str, identifier: str) -> None:
    # No architect here: the change is left open and the run stops waiting at once.
    local = LocalWait(seconds=0)
    if transition == "deliver":
        await deliver(DeliverParams(service_identifier=identifier), local)
    elif transition == "modify":
        params = ModifyParams(
            service_identifier=identifier, bandwidth=MODIFY_TO.bandwidth, ip_package=MODIFY_TO.ip_package
        )
        await modify(params, local)
    else:
        await decommission(DecommissionParams(service_identifier=identifier), local)


async def through_plain_runner(transition: str, identifier: str, db: str, after: int) -> None:
    inventory: Inventory = (
        InfrahubInventory.from_settings(InfrahubSettings()) if db == "infrahub" else EmbeddedInventory(db)
    )
    changes = MODIFY_TO if transition == "modify" else Changes()
    work = Work(identifier, TRANSITIONS[transition], inventory, changes)  # type: ignore[index]
    await runner.run(work, execute=dying(runner.call, after))


def run_and_die(mode: str, transition: str, identifier: str, db: str, after: int) -> None:
    os.environ["FACTORY_DB"] = db
    if mode == "prefect":
        engine.execute = dying(engine.execute, after)  # type: ignore[assignment]
        asyncio.run(through_prefect(transition, identifier))
    else:
        asyncio.run(through_plain_runner(transition, identifier, db, after))


def main() -> None:
    mode, transition, identifier, *jobs = sys.argv[1:]
    exits: dict[str, int] = {}
    for job in jobs:
        after, db = job.split("=", 1)
        pid = os.fork()
        if pid == 0:
            try:
                run_and_die(mode, transition, identifier, db, int(after))
            finally:
                os._exit(0)  # ran to the end without being killed
        _, status = os.waitpid(pid, 0)
        exits[after] = os.waitstatus_to_exitcode(status)
    print(json.dumps(exits))


if __name__ == "__main__":
    main()
