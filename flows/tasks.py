"""Prefect tasks around the allocation core: one readable task per step, retried only when the
source of truth is briefly unreachable, never on a domain error (the input has to change)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from ipaddress import IPv4Network
from typing import Any, ParamSpec, TypeVar

import httpx
from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun

from allocation import core, lifecycle
from allocation.errors import InventoryUnavailable
from allocation.intent import Bandwidth, IpPackage, ServiceRequest
from allocation.inventory import Inventory
from allocation.model import Gateway, PortAssignment, ProposedChange, Service, Vlan

P = ParamSpec("P")
R = TypeVar("R")

RETRIES = 4
RETRY_DELAYS = [0.5, 1, 2, 4]  # seconds: a locked SQLite file or a restarting Infrahub


def is_transient(error: BaseException) -> bool:
    if isinstance(error, InventoryUnavailable | httpx.TransportError | ConnectionError | TimeoutError):
        return True
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code in (429, 502, 503, 504)
    if isinstance(error, sqlite3.OperationalError):
        text = str(error).lower()
        return "locked" in text or "busy" in text
    return False


def retry_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's retry_condition_fn: AllocationError and programming errors fail at once."""
    error = state.data  # Prefect hands the raised exception over as the Failed state's data
    return isinstance(error, BaseException) and is_transient(error)


def step(name: str, run_name: str | None = None) -> Callable[[Callable[P, R]], Task[P, R]]:
    """A lifecycle task. The inventory is a live connection, not data: no caching, no persisted result."""
    return task(
        name=name,
        task_run_name=run_name,
        retries=RETRIES,
        retry_delay_seconds=RETRY_DELAYS,
        retry_condition_fn=retry_transient,
        cache_policy=NO_CACHE,
        persist_result=False,
    )


@step("record request", "record request {request.service_identifier}")
async def record_request(request: ServiceRequest, inventory: Inventory) -> Service:
    return await lifecycle.request_service(request, inventory)


@step("read service", "read service {identifier}")
async def read_service(identifier: str, inventory: Inventory) -> Service:
    return await lifecycle.get_service(identifier, inventory)


@step("begin transition", "begin {transition.name} {identifier}")
async def begin(
    identifier: str,
    transition: lifecycle.Transition,
    inventory: Inventory,
    bandwidth: Bandwidth | None = None,
    ip_package: IpPackage | None = None,
) -> str | None:
    return await lifecycle.begin(
        identifier, transition, inventory, bandwidth=bandwidth, ip_package=ip_package
    )


@step("plan", "plan {identifier} on {branch}")
async def plan(identifier: str, inventory: Inventory, branch: str) -> core.Plan:
    return await lifecycle.plan_on_branch(identifier, inventory, branch)


@step("allocate VLAN")
async def allocate_vlan(plan: core.Plan, inventory: Inventory, branch: str) -> Vlan:
    return await core.allocate_vlan(plan, inventory, branch)


@step("allocate prefix")
async def allocate_prefix(plan: core.Plan, inventory: Inventory, branch: str, vlan: Vlan) -> IPv4Network:
    return await core.allocate_prefix(plan, inventory, branch, vlan)


@step("allocate port")
async def allocate_port(plan: core.Plan, inventory: Inventory, branch: str, vlan: Vlan) -> PortAssignment:
    return await core.allocate_port(plan, inventory, branch, vlan)


@step("allocate gateway")
async def allocate_gateway(
    plan: core.Plan,
    inventory: Inventory,
    branch: str,
    vlan: Vlan,
    prefix: IPv4Network,
    port: PortAssignment,
) -> Gateway:
    return await core.allocate_gateway(plan, inventory, branch, vlan, prefix, port)


@step("release gateway")
async def release_gateway(identifier: str, inventory: Inventory, branch: str) -> None:
    await inventory.release_gateway(identifier, branch=branch)


@step("release port")
async def release_port(identifier: str, inventory: Inventory, branch: str) -> None:
    await inventory.release_port(identifier, branch=branch)


@step("release prefix")
async def release_prefix(identifier: str, inventory: Inventory, branch: str) -> None:
    await inventory.release_prefix(identifier, branch=branch)


@step("release VLAN")
async def release_vlan(identifier: str, inventory: Inventory, branch: str) -> None:
    await inventory.release_vlan(identifier, branch=branch)


@step("mark target status", "mark {identifier} {transition.target} on {branch}")
async def mark_target(
    identifier: str, transition: lifecycle.Transition, inventory: Inventory, branch: str
) -> None:
    await lifecycle.mark_target(identifier, transition, inventory, branch)


@step("abandon transition", "abandon {transition.name} {identifier}")
async def abandon(
    identifier: str, transition: lifecycle.Transition, inventory: Inventory, branch: str
) -> None:
    await lifecycle.abandon(identifier, transition, inventory, branch)


@step("open proposed change", "open proposed change for {branch}")
async def open_proposed_change(
    identifier: str, transition: lifecycle.Transition, inventory: Inventory, branch: str
) -> ProposedChange:
    return await lifecycle.request_review(identifier, transition, inventory, branch)


@step("conclude", "conclude {transition.name} {identifier}")
async def conclude(
    identifier: str, transition: lifecycle.Transition, inventory: Inventory, branch: str
) -> lifecycle.Outcome:
    """Merged: done. Closed: compensate (give back what the branch took, status back). Open: waiting."""
    return await lifecycle.conclude(identifier, transition, inventory, branch)
