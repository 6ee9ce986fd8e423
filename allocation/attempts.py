"""Which branch a transition works on, attempt after attempt.

A rejected (closed) attempt leaves its branch and proposed change for the record; the next attempt
works on ``<id>-deliver-2``, and so on. The newest attempt is the first branch without a proposed
change, or the last one that has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from allocation import policy
from allocation.inventory import Inventory
from allocation.model import ProposedChange


@dataclass(frozen=True)
class Attempt:
    branch: str
    change: ProposedChange | None  # None: the branch has no proposed change (yet)

    def following(self, identifier: str, transition: policy.TransitionName) -> str:
        """The branch of the attempt after this one."""
        return policy.branch_name(
            identifier, transition, policy.attempt_of(self.branch, identifier, transition) + 1
        )


async def latest(identifier: str, transition: policy.TransitionName, inventory: Inventory) -> Attempt:
    """The newest attempt of a transition: one read per attempt made so far (attempts are few)."""
    found = Attempt(policy.branch_name(identifier, transition), None)
    attempt = 1
    while True:
        branch = policy.branch_name(identifier, transition, attempt)
        change = await inventory.get_proposed_change(branch)
        if change is None:
            return found
        found = Attempt(branch, change)
        attempt += 1


def latest_of(
    changes: Sequence[ProposedChange], identifier: str, transition: policy.TransitionName
) -> Attempt:
    """``latest`` from proposed changes already read (a planning view's, oldest first): no read."""
    newest = {change.branch: change for change in changes}
    found = Attempt(policy.branch_name(identifier, transition), None)
    attempt = 1
    while (change := newest.get(policy.branch_name(identifier, transition, attempt))) is not None:
        found = Attempt(change.branch, change)
        attempt += 1
    return found
