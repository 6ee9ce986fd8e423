"""The review events: their wire format is Prefect's, and the webhook transform recognises the
Infrahub events that mean a proposed change was merged or closed (payloads as Infrahub 1.11.9
hands them to a transform)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prefect.events import Event

from deployments import events
from deployments.infrahub_transform import review_outcome

CHANGE = "18ec9391-948a-b060-e3b1-267303b0a779"


def test_the_event_is_prefects_wire_format_and_names_the_branch() -> None:
    wire = events.proposed_change_event("dia-0042-deliver", "merged", CHANGE, name="Deliver DIA-0042")
    event = Event.model_validate(json.loads(json.dumps(wire)))  # what POST /api/events accepts
    assert event.event == "infrahub.proposed_change.merged"
    assert event.resource.id == f"infrahub.proposed_change.{CHANGE}"
    assert event.resource["infrahub.proposed_change.branch"] == "dia-0042-deliver"
    assert event.resource["infrahub.proposed_change.state"] == "merged"
    assert event.resource.name == "Deliver DIA-0042"
    closed = events.proposed_change_event("dia-0042-deliver", "closed", CHANGE)
    assert closed["event"] == "infrahub.proposed_change.closed" and closed["id"] != wire["id"]


def test_only_merged_or_closed_is_an_outcome() -> None:
    with pytest.raises(ValueError, match="merged or closed"):
        events.proposed_change_event("b", "open", CHANGE)  # type: ignore[arg-type]


def received(event: str, data: dict[str, Any]) -> dict[str, Any]:
    """What Infrahub's webhook passes to a transform: the event's data and its context."""
    return {
        "data": data,
        "id": "bed0e9e8",
        "branch": None,
        "account_id": "a",
        "occured_at": "t",
        "event": event,
    }


def node_updated(state: dict[str, Any] | None, kind: str = "CoreProposedChange") -> dict[str, Any]:
    attributes = (
        {"state": {"name": "state", "kind": "Text", "value_update_status": "updated", **state}}
        if state
        else {}
    )
    return received(
        "infrahub.node.updated",
        {
            "kind": kind,
            "node_id": CHANGE,
            "action": "updated",
            "changelog": {
                "node_id": CHANGE,
                "node_kind": kind,
                "attributes": attributes,
                "relationships": {},
            },
            "fields": list(attributes),
        },
    )


def test_a_merged_event_is_a_merge() -> None:
    data = {
        "proposed_change_id": CHANGE,
        "proposed_change_name": "Deliver DIA-0042",
        "proposed_change_state": "merged",
        "merged_by_account_id": "a",
        "merged_by_account_name": "admin",
    }
    assert review_outcome(received("infrahub.proposed_change.merged", data)) == (CHANGE, "merged")


@pytest.mark.parametrize("state", ["closed", "canceled"])
def test_a_change_updated_to_closed_or_canceled_is_closed(state: str) -> None:
    assert review_outcome(node_updated({"value": state, "value_previous": "open"})) == (CHANGE, "closed")


@pytest.mark.parametrize(
    "event",
    [
        node_updated({"value": "merged", "value_previous": "merging"}),  # its own merged event reports it
        node_updated({"value": "merging", "value_previous": "open"}),
        node_updated(None),  # a title or a reviewer changed
        node_updated({"value": "closed", "value_previous": "open"}, kind="CoreArtifact"),
        received("infrahub.proposed_change.approved", {"proposed_change_id": CHANGE}),
    ],
)
def test_anything_else_is_not_forwarded(event: dict[str, Any]) -> None:
    assert review_outcome(event) is None
