"""The generator's decision on the embedded backend: it implements what the core plans, idempotently,
only on a branch and never for a service being retired."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from allocation.backends.embedded import EmbeddedInventory
from allocation.errors import PoolExhausted
from allocation.model import MAIN, PlanningView
from generators.implement import Skipped, implement
from tests import lifecycle
from tests.support import request, small_pools_data


class CountingViews(EmbeddedInventory):
    """The embedded inventory, counting its planning reads."""

    reads = 0

    async def planning_view(self, *args: Any, **kwargs: Any) -> PlanningView:
        self.reads += 1
        return await super().planning_view(*args, **kwargs)


async def test_generator_implements_a_draft_on_a_branch_as_the_flows_would(
    inventory: EmbeddedInventory,
) -> None:
    await lifecycle.request_service(request("DIA-0001"), inventory)
    await lifecycle.request_service(request("DIA-0002"), inventory)
    await inventory.create_branch("dia-0001-generated")
    generated = await implement("DIA-0001", inventory, "dia-0001-generated")

    change = await lifecycle.prepare("DIA-0002", lifecycle.DELIVER, inventory)
    assert change is not None
    by_flow = (await lifecycle.get_service("DIA-0002", inventory, change.branch)).implementation
    assert generated.complete and by_flow.complete
    # Same policy: the second service lands on the other core switch, with the matching router.
    assert generated.port and by_flow.port and generated.gateway and by_flow.gateway
    assert {generated.port.port.device_index, by_flow.port.port.device_index} == {1, 2}
    assert generated.gateway.device[-5:] == by_flow.gateway.device[-5:] == "par01"


async def test_generator_changes_nothing_where_the_flow_already_allocated(
    inventory: EmbeddedInventory,
) -> None:
    await lifecycle.request_service(request("DIA-0001"), inventory)
    change = await lifecycle.prepare("DIA-0001", lifecycle.DELIVER, inventory)
    assert change is not None
    before = (await lifecycle.get_service("DIA-0001", inventory, change.branch)).implementation
    usage = await inventory.pool_usage()
    assert await implement("DIA-0001", inventory, change.branch) == before
    assert await inventory.pool_usage() == usage


async def test_generator_never_allocates_on_main_nor_undoes_a_decommission(
    inventory: EmbeddedInventory,
) -> None:
    await lifecycle.request_service(request("DIA-0001"), inventory)
    with pytest.raises(Skipped, match="never on main"):
        await implement("DIA-0001", inventory, MAIN)
    change = await lifecycle.prepare("DIA-0001", lifecycle.DELIVER, inventory)
    assert change is not None
    await inventory.merge_proposed_change(change.id)
    retiring = await lifecycle.prepare("DIA-0001", lifecycle.DECOMMISSION, inventory)
    assert retiring is not None
    with pytest.raises(Skipped, match="decommissioned on dia-0001-decommission"):
        await implement("DIA-0001", inventory, retiring.branch)
    assert (await lifecycle.get_service("DIA-0001", inventory, retiring.branch)).implementation.empty


async def test_generator_allocates_from_its_query_alone_and_an_empty_pool_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    """On Infrahub the generator's query holds the service, its site's free ports and claims, but not
    the pools' room (``room=None``): it allocates from that view without another read, and a pool
    with nothing left says so itself, with nothing left allocated on the branch."""
    inventory = CountingViews(tmp_path / "inventory.sqlite3")
    inventory.load(small_pools_data(tmp_path / "data", vlan_start=1000, vlan_end=1000))
    for identifier in ("DIA-0001", "DIA-0002"):
        await lifecycle.request_service(request(identifier), inventory)
        await inventory.create_branch(f"{identifier.lower()}-generated")

    def as_queried(view: PlanningView) -> PlanningView:
        return view.model_copy(update={"room": None})

    view = as_queried(await inventory.planning_view("DIA-0001", "dia-0001-generated"))
    reads = inventory.reads
    first = await implement("DIA-0001", inventory, "dia-0001-generated", view=view)
    assert first.complete and first.vlan is not None and first.vlan.vlan_id == 1000
    assert inventory.reads == reads  # the query's view was enough

    view = as_queried(await inventory.planning_view("DIA-0002", "dia-0002-generated"))
    usage = await inventory.pool_usage()
    with pytest.raises(PoolExhausted, match="no VLAN ID left"):
        await implement("DIA-0002", inventory, "dia-0002-generated", view=view)
    assert (await lifecycle.get_service("DIA-0002", inventory, "dia-0002-generated")).implementation.empty
    assert await inventory.pool_usage() == usage
    await inventory.close()
