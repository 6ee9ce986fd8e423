"""Bad input is refused clearly; transient errors are retried, domain errors are not; two runs at once
for one service allocate once."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from allocation.backends.embedded import EmbeddedInventory
from allocation.errors import (
    InventoryUnavailable,
    NoPortAvailable,
    PoolExhausted,
    ServiceConflict,
    UnknownSite,
)
from allocation.intent import Bandwidth, ServiceStatus
from allocation.model import ChangeState
from allocation.results import Outcome
from allocation.transitions import DELIVER
from flows import engine
from flows.engine import is_transient
from flows.params import DeliverParams, ModifyParams
from tests.flows.conftest import (
    architect,
    deliver_directly,
    dia,
    on_main,
    proposed_changes,
    request_service,
    run_transition,
    usage,
)


def test_bad_identifier_is_refused_before_any_run() -> None:
    with pytest.raises(ValidationError, match="service_identifier"):
        DeliverParams(service_identifier="not an id")
    with pytest.raises(ValidationError, match="needs a new bandwidth"):
        ModifyParams(service_identifier="DIA-0001")
    assert DeliverParams(service_identifier=" dia-0042 ").service_identifier == "DIA-0042"


async def test_unknown_site_is_a_domain_error_and_records_nothing(inventory: EmbeddedInventory) -> None:
    with pytest.raises(UnknownSite, match=r"unknown site 'xyz01'.*par01"):
        await request_service(dia(1, site="xyz01"))
    assert await inventory.list_services("main") == []


async def test_impossible_requests_fail_before_anything_is_taken(inventory: EmbeddedInventory) -> None:
    before = await usage(inventory)
    with pytest.raises(NoPortAvailable, match="10G at bru01"):
        await request_service(dia(1, site="bru01", bandwidth="10000"))
    assert await inventory.list_services("main") == []

    await deliver_directly(inventory, dia(2, site="bru01"))
    active = await on_main(inventory, "DIA-0002")
    taken = await usage(inventory)
    with pytest.raises(NoPortAvailable, match="10G at bru01"):
        await run_transition("modify", "DIA-0002", bandwidth=Bandwidth.G10)
    assert await on_main(inventory, "DIA-0002") == active
    assert await usage(inventory) == taken

    await request_service(dia(3))
    with pytest.raises(ServiceConflict, match="draft: decommission needs it active"):
        await run_transition("decommission", "DIA-0003")
    assert (await on_main(inventory, "DIA-0003")).status is ServiceStatus.DRAFT
    assert await usage(inventory) == taken != before


def test_only_transient_errors_count_as_transient() -> None:
    request = httpx.Request("GET", "http://infrahub")
    assert is_transient(InventoryUnavailable("down"))
    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert is_transient(httpx.ConnectError("refused", request=request))
    assert not is_transient(sqlite3.OperationalError("no such table: port"))
    assert not is_transient(PoolExhausted("Customer vlan pool", "VLAN ID"))
    assert not is_transient(ValueError("bug"))


class _Flaky:
    """The embedded inventory, with the write that allocates the VLAN failing the first ``failures``
    times."""

    def __init__(self, inner: EmbeddedInventory, error: Callable[[], Exception], failures: int) -> None:
        self._inner, self._error, self.failures, self.calls = inner, error, failures, 0

    async def apply_changes(self, identifier: str, changes: Any, **kwargs: Any) -> Any:
        if changes.vlan is not None:
            self.calls += 1
            if self.calls <= self.failures:
                raise self._error()
        return await self._inner.apply_changes(identifier, changes, **kwargs)

    async def close(self) -> None:  # shared by the runs of the test; the fixture's file outlives it
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def _deliver_with(
    monkeypatch: pytest.MonkeyPatch, inventory_path: Any, error: Callable[[], Exception], failures: int
) -> tuple[_Flaky, Any]:
    flaky = _Flaky(EmbeddedInventory(inventory_path), error, failures)
    monkeypatch.setattr(engine, "open_inventory", lambda: flaky)
    await request_service(dia(1))
    try:
        return flaky, await run_transition("deliver", "DIA-0001", auto_approve=True)
    except Exception as exc:
        return flaky, exc


async def test_unavailable_inventory_is_retried(monkeypatch: pytest.MonkeyPatch, inventory_path: Any) -> None:
    flaky, result = await _deliver_with(monkeypatch, inventory_path, lambda: InventoryUnavailable("503"), 1)
    assert flaky.calls == 2
    assert result.outcome is Outcome.DONE


class _DropsReadsWhileOpen:
    """The embedded inventory, losing its first ``failures`` reads of an open proposed change; the
    read after them finds the change merged (the architect decided meanwhile)."""

    def __init__(self, inner: EmbeddedInventory, failures: int) -> None:
        self._inner, self.failures = inner, failures

    async def get_proposed_change(self, branch: str) -> Any:
        change = await self._inner.get_proposed_change(branch)
        if change is not None and change.state is ChangeState.OPEN and self.failures > 0:
            self.failures -= 1
            raise InventoryUnavailable("Infrahub at http://infrahub is unreachable: ReadError")
        if change is not None and change.state is ChangeState.OPEN:
            return await self._inner.merge_proposed_change(change.id)
        return change

    async def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_read_lost_while_waiting_for_review_does_not_end_the_wait(
    monkeypatch: pytest.MonkeyPatch, inventory_path: Any
) -> None:
    dropping = _DropsReadsWhileOpen(EmbeddedInventory(inventory_path), failures=3)
    monkeypatch.setattr(engine, "open_inventory", lambda: dropping)
    await request_service(dia(1))
    result = await run_transition("deliver", "DIA-0001")
    assert dropping.failures == 0
    assert result.outcome is Outcome.DONE and result.status is ServiceStatus.ACTIVE


async def test_domain_error_is_not_retried(
    monkeypatch: pytest.MonkeyPatch, inventory_path: Any, inventory: EmbeddedInventory
) -> None:
    before = await usage(inventory)
    flaky, result = await _deliver_with(
        monkeypatch, inventory_path, lambda: PoolExhausted("Customer vlan pool", "VLAN ID"), 5
    )
    assert flaky.calls == 1
    assert isinstance(result, PoolExhausted)
    assert (await on_main(inventory, "DIA-0001")).status is ServiceStatus.DRAFT  # abandoned cleanly
    assert await usage(inventory) == before


async def test_two_runs_for_one_service_allocate_once(inventory: EmbeddedInventory) -> None:
    before = await usage(inventory)
    await request_service(dia(1))
    approving = asyncio.create_task(architect("DIA-0001", DELIVER, "merge"))
    one, two = await asyncio.gather(
        run_transition("deliver", "DIA-0001"), run_transition("deliver", "DIA-0001")
    )
    await approving
    assert one.outcome is two.outcome is Outcome.DONE
    assert one.resources == two.resources
    after = await usage(inventory)
    assert after["ports"] == before["ports"] + 1
    assert after["Customer vlan pool"] == before["Customer vlan pool"] + 1
    assert after["Customer prefixes pool"] == before["Customer prefixes pool"] + 8
    assert len(proposed_changes(inventory)) == 1
    assert await inventory.leaks() == []
