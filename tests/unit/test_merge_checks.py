"""The checks that block a bad merge, on the embedded backend: every rule broken by hand on a branch
under review, one at a time; the plan the change was opened for; re-opening; verification after the
merge. The same function runs in Infrahub's pipeline (tests/integration/test_review_on_infrahub.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from allocation import core, review, runner
from allocation.backends.embedded import EmbeddedInventory
from allocation.errors import AllocationError, ChangeRefused, NotAsReviewed
from allocation.intent import Bandwidth, IpPackage, ServiceStatus
from allocation.model import MAIN, ChangeState, ProposedChange
from tests import lifecycle
from tests.support import request

Edit = Callable[[EmbeddedInventory, str], None]


def edit(inventory: EmbeddedInventory, service: str, role: str, branch: str, **changes: Any) -> None:
    """A hand edit: one object of the branch rewritten in the file, behind the factory's back."""
    db = inventory._db
    row = db.execute(
        "SELECT data FROM resource WHERE service = ? AND role = ? AND branch = ?", (service, role, branch)
    ).fetchone()
    assert row is not None, f"{service} has no {role} on {branch}"
    data = json.loads(row[0])
    for path, value in changes.items():
        target = data
        *parents, leaf = path.split("__")
        for part in parents:
            target = target[part]
        target[leaf] = value
    db.execute(
        "UPDATE resource SET data = ? WHERE service = ? AND role = ? AND branch = ?",
        (json.dumps(data), service, role, branch),
    )


async def under_review(
    inventory: EmbeddedInventory,
    identifier: str = "DIA-0001",
    bandwidth: Bandwidth = Bandwidth.G10,
    package: IpPackage = IpPackage.SMALL,
) -> ProposedChange:
    await lifecycle.request_service(request(identifier, bandwidth=bandwidth, package=package), inventory)
    change = await lifecycle.prepare(identifier, lifecycle.DELIVER, inventory)
    assert change is not None
    return change


async def refused(inventory: EmbeddedInventory, change: ProposedChange) -> ChangeRefused:
    with pytest.raises(ChangeRefused) as caught:
        await inventory.merge_proposed_change(change.id)
    assert (await inventory.get_proposed_change(change.branch) or change).state is ChangeState.OPEN
    return caught.value


def _port(name: str, device: str = "sw01-par01", speed: int = 10000, index: int = 1) -> dict[str, Any]:
    return {
        "id": f"{device}:{name}",
        "device": device,
        "name": name,
        "speed_mbps": speed,
        "device_index": index,
    }


# (rule, the hand edit of DIA-0001 on its delivery branch, what the refusal says). DIA-0001 is a
# 10G small service at par01: port sw01-par01 Ethernet8, VLAN 1000, 203.0.113.0/29, gateway
# 203.0.113.1/29 on rb01-par01 (Vlan1000). DIA-0002, under review beside it, holds sw02-par01
# Ethernet8.
BROKEN: list[tuple[str, Edit, str]] = [
    (
        "port-site",
        lambda inv, b: edit(inv, "DIA-0001", "port", b, port=_port("Ethernet8", "sw01-lyn01")),
        "DIA-0001: port sw01-lyn01 Ethernet8 is not on a core switch of par01 (sw01-par01, sw02-par01)",
    ),
    (
        "port-speed",
        lambda inv, b: edit(inv, "DIA-0001", "port", b, port=_port("Ethernet4", speed=1000)),
        "DIA-0001: port sw01-par01 Ethernet4 runs at 1000 Mbit/s, slower than the 10000 Mbit/s ordered",
    ),
    (
        "port-shared",
        lambda inv, b: edit(inv, "DIA-0001", "port", b, port=_port("Ethernet8", "sw02-par01", index=2)),
        "DIA-0001: port sw02-par01 Ethernet8 is also held by DIA-0002",
    ),
    (
        "prefix-length",
        lambda inv, b: (
            edit(inv, "DIA-0001", "prefix", b, prefix="203.0.113.0/28"),
            edit(inv, "DIA-0001", "gateway", b, address="203.0.113.1/28"),
        ),
        "DIA-0001: prefix 203.0.113.0/28 is a /28; the small package gets a /29",
    ),
    (
        "prefix-pool",
        lambda inv, b: (
            edit(inv, "DIA-0001", "prefix", b, prefix="192.0.2.0/29"),
            edit(inv, "DIA-0001", "gateway", b, address="192.0.2.1/29"),
        ),
        "DIA-0001: prefix 192.0.2.0/29 is not inside the pool 'Customer prefixes pool' (203.0.113.0/24)",
    ),
    (
        "gateway-address",
        lambda inv, b: edit(inv, "DIA-0001", "gateway", b, address="203.0.113.6/29"),
        "DIA-0001: gateway 203.0.113.6/29 is not the first usable host of 203.0.113.0/29 (203.0.113.1/29)",
    ),
    (
        "gateway-router",
        lambda inv, b: edit(inv, "DIA-0001", "gateway", b, device="rb02-par01"),
        "DIA-0001: gateway on rb02-par01, but port sw01-par01 Ethernet8 pairs with rb01-par01",
    ),
    (
        "one-vlan",
        lambda inv, b: edit(inv, "DIA-0001", "port", b, vlan_id=1999),
        "DIA-0001: port and gateway are not on one VLAN (its VLAN 1000, access VLAN 1999 on the port, "
        "gateway interface Vlan1000 on VLAN 1000)",
    ),
    (
        "complete",
        lambda inv, b: inv._db.execute(
            "DELETE FROM resource WHERE service = 'DIA-0001' AND role = 'gateway' AND branch = ?", (b,)
        ),
        "DIA-0001 is active without a gateway",
    ),
    (
        "decommissioned-holds",
        lambda inv, b: inv._db.execute(
            "UPDATE service_state SET status = 'decommissioned' WHERE identifier = 'DIA-0001' AND branch = ?",
            (b,),
        ),
        "DIA-0001 is decommissioned but still holds its VLAN, prefix, port and gateway",
    ),
]


@pytest.mark.parametrize(("rule", "breaking", "message"), BROKEN, ids=[b[0] for b in BROKEN])
async def test_a_branch_that_breaks_a_rule_is_refused_with_the_reason(
    inventory: EmbeddedInventory, rule: str, breaking: Edit, message: str
) -> None:
    change = await under_review(inventory)
    other = await under_review(inventory, "DIA-0002")  # sw02-par01 Ethernet8, on its own branch
    implementation = (await lifecycle.get_service("DIA-0001", inventory, change.branch)).implementation
    assert implementation.port and implementation.port.port.id == "sw01-par01:Ethernet8"
    assert str(implementation.prefix) == "203.0.113.0/29"
    breaking(inventory, change.branch)

    error = await refused(inventory, change)
    assert message in error.violations, error.violations
    assert str(error).startswith(f"proposed change {change.id} ({change.branch}) cannot be merged")
    on_main = await lifecycle.get_service("DIA-0001", inventory)
    assert on_main.status is ServiceStatus.IN_DELIVERY and on_main.implementation.empty  # nothing merged
    assert other.state is ChangeState.OPEN


async def test_a_clean_branch_merges_and_conclusion_finds_what_was_reviewed(
    inventory: EmbeddedInventory,
) -> None:
    change = await under_review(inventory)
    assert change.description.count("plan sha256: ") == 1
    recorded = review.parse(change.description)
    assert recorded is not None and recorded.intact and set(recorded.states) == {"DIA-0001"}
    await inventory.merge_proposed_change(change.id)
    assert await lifecycle.conclude("DIA-0001", lifecycle.DELIVER, inventory, change.branch) is (
        lifecycle.Outcome.DONE
    )
    on_main = await lifecycle.get_service("DIA-0001", inventory)
    assert recorded.states["DIA-0001"] == review.state_of(on_main)


async def test_a_branch_changed_after_opening_is_refused_until_reopened(inventory: EmbeddedInventory) -> None:
    change = await under_review(inventory)
    reviewed = review.parse(change.description)
    assert reviewed is not None
    # A second attempt moves the service to the other 10G port of its switch: every rule still holds,
    # but it is not what the architect was shown.
    edit(inventory, "DIA-0001", "port", change.branch, port=_port("Ethernet9"))
    error = await refused(inventory, change)
    assert len(error.violations) == 1
    assert error.violations[0].startswith(
        f"DIA-0001 is not as reviewed (plan {review.short(reviewed.digest)}, branch now "
    )
    assert (
        "port (device sw01-par01, name Ethernet8, speed_mbps 10000, vlan_id 1000) was reviewed, now "
        in (error.violations[0])
    )
    assert error.violations[0].endswith("run its transition again to re-open the change with a fresh plan")

    result = await runner.reopen("DIA-0001", inventory)  # `factory reopen DIA-0001`
    reopened = await inventory.get_proposed_change(change.branch)
    assert reopened is not None and reopened.id == change.id and result.proposed_change == change.id
    fresh = review.parse(reopened.description)
    assert fresh is not None and fresh.digest != reviewed.digest
    assert fresh.states["DIA-0001"]["port"]["name"] == "Ethernet9"  # the plan the branch now holds
    await inventory.merge_proposed_change(change.id)
    assert await lifecycle.conclude("DIA-0001", lifecycle.DELIVER, inventory, change.branch) is (
        lifecycle.Outcome.DONE
    )


async def test_reopening_without_a_change_under_review_is_refused(inventory: EmbeddedInventory) -> None:
    await lifecycle.request_service(request("DIA-0001"), inventory)
    with pytest.raises(AllocationError, match="DIA-0001 has no proposed change waiting for review"):
        await runner.reopen("DIA-0001", inventory)


async def test_a_service_the_plan_does_not_name_is_refused(inventory: EmbeddedInventory) -> None:
    change = await under_review(inventory)
    await lifecycle.request_service(request("DIA-0002"), inventory)
    await inventory.update_service("DIA-0002", change.branch, bandwidth=Bandwidth.M100)  # slipped in
    error = await refused(inventory, change)
    assert len(error.violations) == 1
    assert error.violations[0].startswith("DIA-0002 is not as reviewed (plan ")
    assert "): it was not part of the reviewed plan; run its transition again" in error.violations[0]


async def test_a_plan_edited_in_the_description_is_refused(inventory: EmbeddedInventory) -> None:
    change = await under_review(inventory)
    forged = change.description.replace('"speed_mbps": 10000', '"speed_mbps": 100000')
    assert forged != change.description
    inventory._db.execute("UPDATE proposed_change SET description = ? WHERE seq = ?", (forged, change.id))
    error = await refused(inventory, change)
    assert any("does not match its digest" in v and "(edited by hand)" in v for v in error.violations)


async def test_main_changed_between_merge_and_conclusion_is_not_as_reviewed(
    inventory: EmbeddedInventory,
) -> None:
    change = await under_review(inventory)
    await inventory.merge_proposed_change(change.id)
    edit(inventory, "DIA-0001", "gateway", MAIN, address="203.0.113.2/29")  # by hand, on main
    with pytest.raises(
        NotAsReviewed, match=r"DIA-0001 reached main as it was not reviewed in proposed change"
    ):
        await lifecycle.conclude("DIA-0001", lifecycle.DELIVER, inventory, change.branch)


async def test_a_change_opened_without_a_plan_is_held_to_the_rules_only(inventory: EmbeddedInventory) -> None:
    await lifecycle.request_service(request("DIA-0001"), inventory)
    branch = await lifecycle.begin("DIA-0001", lifecycle.DELIVER, inventory)
    assert branch is not None
    await core.apply(await lifecycle.plan_on_branch("DIA-0001", inventory, branch), inventory, branch)
    change = await inventory.open_proposed_change(branch, "by hand", "no plan recorded")
    await inventory.merge_proposed_change(change.id)  # every rule holds
    assert (await lifecycle.get_service("DIA-0001", inventory)).implementation.complete


async def test_decommission_and_modify_pass_their_checks(inventory: EmbeddedInventory) -> None:
    change = await under_review(inventory, bandwidth=Bandwidth.G1, package=IpPackage.SMALL)
    await inventory.merge_proposed_change(change.id)
    modify = await lifecycle.prepare(
        "DIA-0001", lifecycle.MODIFY, inventory, bandwidth=Bandwidth.G10, ip_package=IpPackage.LARGE
    )
    assert modify is not None
    await inventory.merge_proposed_change(modify.id)
    await lifecycle.conclude("DIA-0001", lifecycle.MODIFY, inventory, modify.branch)
    retire = await lifecycle.prepare("DIA-0001", lifecycle.DECOMMISSION, inventory)
    assert retire is not None
    recorded = review.parse(retire.description)
    assert recorded is not None and recorded.states["DIA-0001"]["status"] == "decommissioned"
    await inventory.merge_proposed_change(retire.id)
    assert await lifecycle.conclude("DIA-0001", lifecycle.DECOMMISSION, inventory, retire.branch) is (
        lifecycle.Outcome.DONE
    )


async def test_a_refused_merge_beside_a_run_ends_the_run_with_the_refusal() -> None:
    """`--auto-approve`: the architect runs beside the transition; a merge the checks refuse ends the
    run with the refusal instead of leaving it to wait for a decision that is not coming."""
    import asyncio

    from allocation.results import TransitionResult
    from flows.submit import _beside

    async def waiting_run() -> TransitionResult:
        await asyncio.sleep(60)
        raise AssertionError("the run should have been ended")

    async def refusing_architect() -> None:
        raise ChangeRefused(
            "proposed change 1 (dia-0001-deliver) cannot be merged, 1 check(s) failed: x", ["x"]
        )

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ChangeRefused, match="cannot be merged"):
        await _beside(waiting_run(), refusing_architect())
    assert loop.time() - started < 5


def test_the_review_query_reads_what_the_infrahub_backend_maps() -> None:
    """review.gql (the check's query in Infrahub) selects a service with the same fields as the
    backend's SERVICE_FIELDS, which the backend's mapping reads."""
    from allocation.backends.infrahub import queries
    from allocation.backends.infrahub import review as infrahub_review

    assert " ".join(queries.SERVICE_FIELDS.split()) in " ".join(infrahub_review.query_text().split())


def test_the_messages_of_a_failed_infrahub_check_are_read_back() -> None:
    """Infrahub stores a check's log as its message; a refusal quotes the errors in it."""
    from allocation.backends.infrahub.backend import _failures
    from checks.service_review import ServiceReviewCheck

    check = ServiceReviewCheck(branch="dia-0001-deliver")
    check.log_error("DIA-0001 is active without a gateway", object_type="ServiceDedicatedInternet")
    check.log_info("not an error")
    check.log_error(
        "DIA-0001: port sw01-par01 Ethernet4 runs at 1000 Mbit/s, slower than the 10000 Mbit/s ordered"
    )
    validator = {
        "display_label": "Check: service_review",
        "checks": {
            "edges": [{"node": {"conclusion": {"value": "failure"}, "message": {"value": check.log_entries}}}]
        },
    }
    assert _failures(validator) == [
        "Check: service_review: DIA-0001 is active without a gateway",
        "Check: service_review: DIA-0001: port sw01-par01 Ethernet4 runs at 1000 Mbit/s, slower than the "
        "10000 Mbit/s ordered",
    ]
