"""The webhook transform: an Infrahub review event in, the Prefect event for it out.

Infrahub's task worker runs it for the webhooks ``python -m deployments.webhooks`` declares (one on
``infrahub.proposed_change.merged``, one on ``infrahub.node.updated`` of ``CoreProposedChange``) and
posts what it returns to the Prefect server's ``/api/events``: a list with the event of
``deployments/events.py``, or an empty list when the update was not a review outcome (a title or
reviewer changed, or a merge, which its own event already reports).

It runs inside Infrahub, imported from this repository's checkout as
``commits.<sha>.deployments.infrahub_transform`` with Infrahub's bundled SDK: only the standard
library, the SDK and the sibling ``events`` module (a relative import, so no ``sys.path`` change).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infrahub_sdk.transforms import InfrahubTransform

from .events import MERGED, ReviewState, proposed_change_event

NODE_UPDATED = "infrahub.node.updated"
PROPOSED_CHANGE = "CoreProposedChange"
# A canceled change (its branch was deleted) will not merge either: the service goes back.
NOT_MERGING = {"closed", "canceled"}


def review_outcome(received: Mapping[str, Any]) -> tuple[str, ReviewState] | None:
    """(proposed change id, merged|closed) of an event as Infrahub hands it to a webhook transform
    (``{"event": name, "id": ..., "data": event payload, ...}``), or None."""
    name = received.get("event")
    data = received.get("data") or {}
    if name == MERGED and data.get("proposed_change_id"):
        return str(data["proposed_change_id"]), "merged"
    if name == NODE_UPDATED and data.get("kind") == PROPOSED_CHANGE and data.get("node_id"):
        state = ((data.get("changelog") or {}).get("attributes") or {}).get("state") or {}
        if state.get("value") in NOT_MERGING:
            return str(data["node_id"]), "closed"
    return None


class ProposedChangeToPrefect(InfrahubTransform):
    query = "proposed_change_review"
    timeout = 30

    async def transform(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        found = review_outcome(data)
        if found is None:
            return []
        change_id, state = found
        # A proposed change is branch-agnostic: read it on the default branch (its own is gone
        # once merged and cleaned up).
        response = await self.client.query_gql_query(
            name=self.query, variables={"id": change_id}, branch_name=self.client.default_branch
        )
        edges = (response.get("data") or {}).get("CoreProposedChange", {}).get("edges") or []
        if not edges:
            raise ValueError(f"proposed change {change_id} not found: no event for it")
        node = edges[0]["node"]
        return [
            proposed_change_event(
                node["source_branch"]["value"],
                state,
                change_id,
                name=node["name"]["value"],
                source="infrahub",
                origin=str(data.get("id") or "") or None,
            )
        ]
