"""A transition killed between any two of its steps, then run again, converges: no duplicate, no leak.

Each kill is real: a child process runs the transition (as a Prefect flow against the session's
Prefect server, or with the plain runner) and exits hard right after step N completes
(tests/flows/crash_child.py). The test process then runs the same flow again, with an architect
merging the proposed change, and checks the end state against a run never killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from allocation.backends.embedded import EmbeddedInventory
from allocation.intent import Bandwidth, IpPackage, ServiceStatus
from allocation.results import Outcome
from allocation.transitions import TRANSITIONS
from tests import lifecycle
from tests.flows.conftest import deliver_directly, dia, fresh_copy, proposed_changes, run_transition, usage

CHILD = Path(__file__).with_name("crash_child.py")
ROOT = Path(__file__).resolve().parents[2]
# Steps of a run whose proposed change stays open: begin, the declared steps, mark target status,
# open proposed change, conclude. Killing after the last one would leave nothing to redo.
STEPS = {name: 4 + len(t.steps) for name, t in TRANSITIONS.items()}
KILLED = 17


async def _kill(mode: str, transition: str, dbs: dict[int, Path]) -> dict[str, int]:
    env = {
        **os.environ,
        "FACTORY_BACKEND": "embedded",
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PYTHONPATH": str(ROOT),
    }
    jobs = [f"{n}={db}" for n, db in dbs.items()]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        mode,
        transition,
        "DIA-0001",
        *jobs,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await child.communicate()
    assert child.returncode == 0, stderr.decode()[-3000:]
    exits: dict[str, int] = json.loads(stdout.decode().strip().splitlines()[-1])
    return exits


async def _prepare(transition: str, template: Path, db: Path) -> None:
    fresh_copy(template, db)
    inventory = EmbeddedInventory(db)
    try:
        if transition == "deliver":
            await lifecycle.request_service(dia(1), inventory)
        else:
            await deliver_directly(inventory, dia(1))
    finally:
        await inventory.close()


@pytest.mark.parametrize("mode", ["prefect", "plain"])
@pytest.mark.parametrize("transition", ["deliver", "modify", "decommission"])
async def test_killed_transition_converges_when_run_again(
    mode: str, transition: str, loaded_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = tmp_path / "reference.sqlite3"
    await _prepare(transition, loaded_template, reference)
    points = range(1, STEPS[transition])
    dbs = {n: tmp_path / f"killed-after-{n}.sqlite3" for n in points}
    for db in dbs.values():
        await _prepare(transition, loaded_template, db)
    exits = await _kill(mode, transition, dbs)
    assert exits == {str(n): KILLED for n in points}, "every child must die right after its step N"

    changes = {"bandwidth": Bandwidth.G10, "ip_package": IpPackage.MEDIUM} if transition == "modify" else {}
    expected = {}
    for n, db in [(0, reference), *dbs.items()]:
        monkeypatch.setenv("FACTORY_DB", str(db))
        result = await run_transition(transition, "DIA-0001", auto_approve=True, **changes)  # type: ignore[arg-type]
        assert result.outcome is Outcome.DONE, f"killed after step {n}: {result.message}"
        inventory = EmbeddedInventory(db)
        try:
            state = {
                "status": result.status,
                "resources": result.resources,
                "usage": await usage(inventory),
                "changes": proposed_changes(inventory),
                "leaks": await inventory.leaks(),
            }
        finally:
            await inventory.close()
        if n == 0:
            expected = state  # the same flow, never killed
            assert state["leaks"] == []
            assert state["status"] is (
                ServiceStatus.DECOMMISSIONED if transition == "decommission" else ServiceStatus.ACTIVE
            )
        else:
            assert state == expected, f"{transition} killed after step {n} did not converge"
