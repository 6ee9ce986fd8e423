"""The events that tell Prefect a proposed change was reviewed, in one place.

Two events, one per outcome of a review, each naming the proposed change and its *branch*, so that
the runs waiting on that one branch can be resumed:

- ``infrahub.proposed_change.merged``: Infrahub's own name for a merged proposed change;
- ``infrahub.proposed_change.closed``: Infrahub has no such event (a closed change is an
  ``infrahub.node.updated`` of a ``CoreProposedChange`` whose ``state`` became ``closed``); the
  webhook transform derives it, in the same namespace so that both outcomes read alike.

Both reach the Prefect server's ``POST /api/events`` (a JSON list of events) from Infrahub's
webhook (``deployments/infrahub_transform.py``), and from the embedded backend's ``factory approve``
and ``reject``. Infrahub's events do not carry the change's source branch, so the transform looks
it up; the branch is the resource label ``infrahub.proposed_change.branch``.

Standard library only: Infrahub's task worker imports this module (through the transform) with its
own Python and packages.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

MERGED = "infrahub.proposed_change.merged"
CLOSED = "infrahub.proposed_change.closed"
EVENTS = {"merged": MERGED, "closed": CLOSED}

RESOURCE_PREFIX = "infrahub.proposed_change."
ID_LABEL = "infrahub.proposed_change.id"
BRANCH_LABEL = "infrahub.proposed_change.branch"
STATE_LABEL = "infrahub.proposed_change.state"

ReviewState = Literal["merged", "closed"]


def proposed_change_event(
    branch: str,
    state: ReviewState,
    change_id: str,
    *,
    name: str | None = None,
    source: str = "factory",
    occurred: datetime | None = None,
    origin: str | None = None,
) -> dict[str, Any]:
    """One event in Prefect's wire format (JSON-ready), for ``POST /api/events`` as ``[event]``.

    ``source`` says who noticed the review (``infrahub`` for the webhook, ``factory`` for the CLI);
    ``origin`` is the id of the event it was derived from, if any.
    """
    if state not in EVENTS:
        raise ValueError(f"a reviewed proposed change is merged or closed, not {state!r}")
    resource = {
        "prefect.resource.id": f"{RESOURCE_PREFIX}{change_id}",
        ID_LABEL: change_id,
        BRANCH_LABEL: branch,
        STATE_LABEL: state,
    }
    if name:
        resource["prefect.resource.name"] = name
    payload: dict[str, str] = {"source": source}
    if origin:
        payload["origin"] = origin
    return {
        "id": str(uuid.uuid4()),
        "occurred": (occurred or datetime.now(UTC)).isoformat(),
        "event": EVENTS[state],
        "resource": resource,
        "related": [],
        "payload": payload,
    }
