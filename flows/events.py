"""The events a decision on a proposed change sends to the Prefect server, whoever decided.

Infrahub sends them through its webhook when an architect merges or closes a change there; the
``factory approve`` / ``reject`` commands send the same ones on the embedded backend. The
reconcile deployment is triggered by them and resumes exactly the runs waiting on that branch.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

MERGED = "infrahub.proposed_change.merged"
CLOSED = "infrahub.proposed_change.closed"
EVENT_NAMES = {"merged": MERGED, "closed": CLOSED}


def decision_event(
    branch: str, state: Literal["merged", "closed"], change_id: str | None = None
) -> dict[str, Any]:
    """A Prefect event (the shape ``/api/events`` takes) naming the review branch and the decision."""
    return {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": EVENT_NAMES[state],
        "resource": {
            "prefect.resource.id": f"infrahub.proposed_change.{change_id or branch}",
            "infrahub.branch.name": branch,
            "infrahub.proposed_change.state": state,
        },
        "payload": {"branch": branch, "state": state, "proposed_change": change_id},
    }


async def announce_decision(
    branch: str | None, state: Literal["merged", "closed"], change_id: str | None = None
) -> None:
    """Post the decision to the configured Prefect server; nothing when none is configured."""
    api = os.environ.get("PREFECT_API_URL")
    if not api or branch is None:
        return
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{api.rstrip('/')}/events", json=[decision_event(branch, state, change_id)]
        )
        response.raise_for_status()
