"""Each lifecycle transition, declared once: its statuses, its ordered steps, its compensation.

    draft --deliver--> in-delivery --merged--> active --modify--> in-delivery --merged--> active
    active --decommission--> in-decommissioning --merged--> decommissioned
    (closed: back to where the transition started, with what the branch took given back)

Every transition runs in the same frame (``allocation/runner.py``)::

    begin >> <its steps> >> mark target status >> open proposed change >> wait >> conclude
                 | a domain error                                        merged |   | closed
                 v                                                          v   v
            compensation                                           verify merge   compensation

The proposed change records the plan it was opened for (``allocation/review.py``); it merges only
while the branch matches that plan and keeps the product's rules (``allocation/checks.py``, run by
Infrahub's pipeline and by the embedded backend's merge). Running a transition again while its
change is open re-opens it: the steps bring the branch back to the plan, the change records the
fresh plan and its checks run again.

The plain runner calls these steps directly (the CLI, the bench, the generator); ``flows/`` runs
the same declarations as Prefect tasks and flows. Adding a product means a schema and a
declaration like these, not new flows.
"""

from __future__ import annotations

from dataclasses import dataclass

from allocation import attempts
from allocation.intent import ServiceStatus
from allocation.inventory import Inventory
from allocation.model import ChangeState, ProposedChange, Service
from allocation.policy import TransitionName
from allocation.steps import (
    Step,
    Steps,
    allocate_gateway,
    allocate_resources,
    give_back,
    plan,
    release_gateway,
    release_port,
    release_prefix,
    release_vlan,
)


@dataclass(frozen=True)
class Transition:
    name: TransitionName
    starts_from: ServiceStatus
    during: ServiceStatus
    target: ServiceStatus
    steps: Steps
    compensation: Step
    summary: str = ""

    @property
    def allocates(self) -> bool:
        """Whether the transition takes resources, so capacity is checked before it begins."""
        return plan in self.steps.steps


DELIVER = Transition(
    "deliver",
    starts_from=ServiceStatus.DRAFT,
    during=ServiceStatus.IN_DELIVERY,
    target=ServiceStatus.ACTIVE,
    steps=plan >> allocate_resources >> allocate_gateway,
    compensation=give_back,
    summary="Allocate VLAN, prefix, port and gateway on the service's branch; active once merged.",
)

MODIFY = Transition(
    "modify",
    starts_from=ServiceStatus.ACTIVE,
    during=ServiceStatus.IN_DELIVERY,
    target=ServiceStatus.ACTIVE,
    # The same steps as delivery: each keeps what still fits (a port fast enough, a prefix of the
    # package's size) and replaces the rest; what is replaced returns to its pool with the merge.
    steps=plan >> allocate_resources >> allocate_gateway,
    compensation=give_back,
    summary="A new bandwidth or IP package for an active service, through a reviewed change.",
)

DECOMMISSION = Transition(
    "decommission",
    starts_from=ServiceStatus.ACTIVE,
    during=ServiceStatus.IN_DECOMMISSIONING,
    target=ServiceStatus.DECOMMISSIONED,
    # The reverse order of allocation; everything returns to its pool with the merge.
    steps=release_gateway >> release_port >> release_prefix >> release_vlan,
    compensation=give_back,
    summary="Release gateway, port, prefix and VLAN; decommissioned once merged.",
)

TRANSITIONS: dict[TransitionName, Transition] = {t.name: t for t in (DELIVER, MODIFY, DECOMMISSION)}


@dataclass(frozen=True)
class Underway:
    """The transition a service is in, the branch of its newest attempt and that branch's change."""

    transition: Transition
    branch: str
    change: ProposedChange | None


async def underway(service: Service, inventory: Inventory) -> Underway | None:
    """Which transition a service on main is in, or None when it is in none.

    Delivery and modify share the status ``in-delivery``: once a delivery was merged, the service is
    past delivery for good, so the transition is a modify."""
    candidates = [t for t in TRANSITIONS.values() if t.during is service.status]
    if not candidates:
        return None
    if len(candidates) > 1:
        delivery = await attempts.latest(service.service_identifier, DELIVER.name, inventory)
        delivered = delivery.change is not None and delivery.change.state is ChangeState.MERGED
        if not delivered:
            return Underway(DELIVER, delivery.branch, delivery.change)
        candidates = [MODIFY]
    transition = candidates[0]
    attempt = await attempts.latest(service.service_identifier, transition.name, inventory)
    return Underway(transition, attempt.branch, attempt.change)
