"""A transition killed between two of its steps on the live Infrahub, then run again, ends where a run
never killed ends: the same VLAN, prefix, port and gateway, and nothing leaked.

Each kill is real: a child process (tests/flows/crash_child.py) runs the transition with the plain
runner against Infrahub and exits hard right after step N. The test then runs the transition again up
to its open proposed change and compares with a reference run of a service that was never killed.
Every attempt is then closed, so what it took goes back to the pools and the next kill point is
allocated from the same free resources as the reference: equal implementations, not only equal counts.

CI kills at one point of each (half-allocated, half-released: the states a resume must read right);
``make test-slow`` (the ``every`` cases, marked slow) kills at every point. The decommission's two
merges are each concluded by three clients at once, as production's concluders can.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from allocation.backends.infrahub import InfrahubInventory
from allocation.intent import ServiceStatus
from allocation.model import Implementation
from allocation.results import Outcome
from allocation.runner import run_transition
from allocation.transitions import DECOMMISSION, DELIVER, Transition
from tests import lifecycle
from tests.integration.conftest import (
    conclude_at_once,
    held,
    merge_in_infrahub,
    pool_and_port_usage,
    requires_infrahub,
)
from tests.support import request

pytestmark = [pytest.mark.integration, requires_infrahub]

ROOT = Path(__file__).resolve().parents[2]
CHILD = ROOT / "tests" / "flows" / "crash_child.py"
KILLED = 17
SITE = "ams01"
# begin, the declared steps, mark target status, open proposed change (conclude would be next).
ALL_POINTS = {t.name: list(range(1, 4 + len(t.steps))) for t in (DELIVER, DECOMMISSION)}
SAMPLED = {"deliver": [3], "decommission": [3]}  # allocated, no gateway yet; half-released


async def _kill_after(transition: Transition, identifier: str, after: int) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        "plain",
        transition.name,
        identifier,
        f"{after}=infrahub",
        env={**os.environ, "FACTORY_BACKEND": "infrahub", "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await child.communicate()
    assert child.returncode == 0, stderr.decode()[-3000:]
    exits = json.loads(stdout.decode().strip().splitlines()[-1])
    assert exits == {str(after): KILLED}, f"the child must die right after step {after}: {exits}"


async def _run_to_review(
    transition: Transition, identifier: str, inventory: InfrahubInventory
) -> tuple[str, str, Implementation]:
    """Run again, as reconciliation or a retry would, up to the open change: its id and what the
    branch holds."""
    result = await run_transition(transition, identifier, inventory)
    assert result.outcome is Outcome.WAITING, result.message
    assert result.branch is not None and result.proposed_change is not None
    on_branch = await lifecycle.get_service(identifier, inventory, result.branch)
    return result.proposed_change, result.branch, on_branch.implementation


async def _close(transition: Transition, identifier: str, change: str, inventory: InfrahubInventory) -> None:
    closed = await inventory.close_proposed_change(change)
    assert await lifecycle.conclude(identifier, transition, inventory, closed.branch) is Outcome.REJECTED


async def _unreleased(identifier: str) -> list[str]:
    return sorted(r for r, (_, released) in (await held(identifier)).items() if released is None)


@pytest.mark.parametrize(
    "points",
    [SAMPLED["deliver"], pytest.param(ALL_POINTS["deliver"], marks=pytest.mark.slow)],
    ids=["sampled", "every"],
)
async def test_a_delivery_killed_at_any_step_resumes_to_what_an_unkilled_one_holds(
    points: list[int], infrahub: InfrahubInventory, new_id: Callable[[], str]
) -> None:
    before = await pool_and_port_usage(infrahub, SITE)
    expected: dict[str, Any] = {}
    for after in [0, *points]:
        identifier = new_id()
        await lifecycle.request_service(request(identifier, site=SITE), infrahub)
        if after:
            await _kill_after(DELIVER, identifier, after)
        change, _, implementation = await _run_to_review(DELIVER, identifier, infrahub)
        state = {
            # The names carry the service's identifier; the resources are what must be equal.
            "vlan_id": implementation.vlan.vlan_id if implementation.vlan else None,
            "prefix": implementation.prefix,
            "port": implementation.port.port.id if implementation.port else None,
            "gateway": implementation.gateway.address if implementation.gateway else None,
            "usage": await pool_and_port_usage(infrahub, SITE),
            "reserved": len(await _unreleased(identifier)),
            "leaks": await infrahub.leaks(),
        }
        if not after:
            expected = state
            assert None not in (state["vlan_id"], state["prefix"], state["port"], state["gateway"])
            assert state["leaks"] == [] and state["usage"] != before
        else:
            assert state == expected, f"a delivery killed after step {after} did not converge"
        await _close(DELIVER, identifier, change, infrahub)
        service = await lifecycle.get_service(identifier, infrahub)
        assert service.status is ServiceStatus.DRAFT and service.implementation.empty
        assert await _unreleased(identifier) == []
        assert await pool_and_port_usage(infrahub, SITE) == before, f"killed after {after}: a leak"


@pytest.mark.parametrize(
    "points",
    [SAMPLED["decommission"], pytest.param(ALL_POINTS["decommission"], marks=pytest.mark.slow)],
    ids=["sampled", "every"],
)
async def test_a_decommission_killed_at_any_step_resumes_to_what_an_unkilled_one_holds(
    points: list[int], infrahub: InfrahubInventory, new_id: Callable[[], str]
) -> None:
    identifier = new_id()
    await lifecycle.request_service(request(identifier, site=SITE), infrahub)
    delivery = await lifecycle.prepare(identifier, DELIVER, infrahub)
    assert delivery is not None
    await merge_in_infrahub(delivery.id)
    await conclude_at_once(infrahub, identifier, DELIVER, delivery.branch)
    active = await lifecycle.get_service(identifier, infrahub)
    holding = await pool_and_port_usage(infrahub, SITE)
    reserved = await _unreleased(identifier)
    assert len(reserved) == 3  # the VLAN ID, the prefix and the port

    change = branch = ""
    for after in [0, *points]:
        if after:
            await _kill_after(DECOMMISSION, identifier, after)
        change, branch, implementation = await _run_to_review(DECOMMISSION, identifier, infrahub)
        assert implementation.empty, f"killed after {after}: the branch still holds {implementation}"
        on_main = await lifecycle.get_service(identifier, infrahub)
        assert on_main.status is ServiceStatus.IN_DECOMMISSIONING
        assert on_main.implementation == active.implementation  # nothing is given back before the merge
        assert await infrahub.leaks() == []
        if after != points[-1]:
            await _close(DECOMMISSION, identifier, change, infrahub)
            back = await lifecycle.get_service(identifier, infrahub)
            assert back.status is ServiceStatus.ACTIVE, f"killed after {after}"
            assert back.implementation == active.implementation, f"killed after {after}"
            assert await pool_and_port_usage(infrahub, SITE) == holding, f"killed after {after}"
            assert await _unreleased(identifier) == reserved, f"killed after {after}"

    # The last attempt is merged in Infrahub and concluded by three parties at once: everything is
    # back in its pool, once.
    await merge_in_infrahub(change)
    await conclude_at_once(infrahub, identifier, DECOMMISSION, branch)
    gone = await lifecycle.get_service(identifier, infrahub)
    assert gone.status is ServiceStatus.DECOMMISSIONED and gone.implementation.empty
    assert await _unreleased(identifier) == []
    assert await infrahub.leaks() == []
