"""A VLAN ID a pool hands out while a reservation still names it, on the Infrahub backend.

Error handling only (the pool and the reservation disagreeing is hard to stage on a shared Infrahub):
the backend's requests are replaced by a small in-memory stand-in, everything else is the backend's.
"""

from __future__ import annotations

from typing import Any

import pytest

from allocation.backends.infrahub import InfrahubInventory
from allocation.backends.infrahub import mutations as m
from allocation.errors import ServiceConflict

RESOURCE = "vlan default:1007"


class Stand_in:
    def __init__(self, claimed_on: str, branches: set[str]) -> None:
        self.record = {
            "id": "r1",
            "service_identifier": {"value": "OTHER-0001"},
            "claimed_on": {"value": claimed_on},
            "released_on": {"value": None},
        }
        self.branches = branches
        self.deleted: list[str] = []
        self.sent: list[list[m.Op]] = []

    async def gql(self, query: str, variables: dict[str, Any] | None = None, *_: Any, **__: Any) -> Any:
        variables = variables or {}
        if "query Reservation(" in query:
            edges = [] if "r1" in self.deleted else [{"node": self.record}]
            return {"ServiceReservation": {"edges": edges}}
        if "query Branch(" in query:
            name = variables["name"]
            return {"Branch": [{"name": name}] if name in self.branches else []}
        raise AssertionError(f"unexpected request {query[:40]!r}")

    async def write(self, ops: list[m.Op], branch: str, **_: Any) -> dict[str, Any]:
        self.deleted += [str(op.data["id"]) for op in ops if op.mutation.endswith("Delete")]
        return {}

    async def send(self, ops: list[m.Op], branch: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        self.sent.append(ops)
        return {}, []


def backend(stand_in: Stand_in) -> InfrahubInventory:
    inventory = InfrahubInventory("http://127.0.0.1:9")
    inventory._gql = stand_in.gql  # type: ignore[method-assign]
    inventory._write = stand_in.write  # type: ignore[method-assign]
    inventory._send = stand_in.send  # type: ignore[method-assign]
    return inventory


RECORD = m.create("ServiceReservation", {"resource": {"value": RESOURCE}}, alias="vlan_record")
UNIQUE = {
    "message": "Violates uniqueness constraint 'resource'",
    "path": ["vlan_record"],
}


ANSWER = m.Op(
    "ServiceDedicatedInternetUpdate", "ServiceDedicatedInternetUpdateInput", {"id": "s1"}, alias="service"
)


@pytest.mark.parametrize("answered", [False, True])
async def test_a_record_claimed_on_a_branch_that_is_gone_is_void_and_taken_over(answered: bool) -> None:
    stand_in = Stand_in(claimed_on="other-0001-deliver", branches={"main"})
    inventory = backend(stand_in)
    sent = [RECORD, ANSWER] if answered else [RECORD]
    left, _ = await inventory._recorded_elsewhere("DIA-0001", sent, [UNIQUE], "dia-0001-deliver")
    assert left == []
    assert stand_in.deleted == ["r1"]
    # This service's record written again, and the service returned after it for the next step.
    assert stand_in.sent == [sent]
    await inventory.close()


@pytest.mark.parametrize("claimed_on", ["main", "other-0001-decommission"])
async def test_a_record_whose_claim_still_stands_is_a_conflict(claimed_on: str) -> None:
    stand_in = Stand_in(claimed_on=claimed_on, branches={"main", "other-0001-decommission"})
    inventory = backend(stand_in)
    with pytest.raises(
        ServiceConflict,
        match=r"vlan default 1007, handed to DIA-0001 by its pool, is still recorded for OTHER-0001",
    ):
        await inventory._recorded_elsewhere("DIA-0001", [RECORD], [UNIQUE], "dia-0001-deliver")
    assert stand_in.deleted == [] and stand_in.sent == []
    await inventory.close()
