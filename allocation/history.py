"""Who asked, who decided: every proposed change a service has had, transition by transition.

Read from the inventory, so it is Infrahub's own record where Infrahub runs (the proposed change's
state and the account that last set it), and the embedded file's otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from allocation import policy
from allocation.inventory import Inventory
from allocation.model import ProposedChange
from allocation.transitions import TRANSITIONS


@dataclass(frozen=True)
class Decision:
    transition: policy.TransitionName
    branch: str
    change: ProposedChange

    @property
    def decided_by(self) -> str | None:
        return self.change.decided_by


async def decisions(identifier: str, inventory: Inventory) -> list[Decision]:
    """Every proposed change of the service, oldest first: one read per attempt made so far."""
    found: list[Decision] = []
    for name in TRANSITIONS:
        attempt = 1
        while True:
            branch = policy.branch_name(identifier, name, attempt)
            change = await inventory.get_proposed_change(branch)
            if change is None:
                break
            found.append(Decision(name, branch, change))
            attempt += 1
    return sorted(found, key=lambda d: (d.change.created_at is None, d.change.created_at, d.branch))
