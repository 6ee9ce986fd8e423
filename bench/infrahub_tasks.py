"""Infrahub's own task timings, read from its task manager (a Prefect server, port 4210 on the native
stack): when a task was due, when it started, how long it ran.

Infrahub runs branch creation, merges, branch deletion and the proposed change pipeline as flow runs
on its task manager; the seconds a step of ours waits on them are Infrahub's, not ours. Flow runs
tagged with a branch are purged a little after the branch is deleted, so read them right after the
step that caused them.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx


@dataclass(frozen=True)
class TaskRun:
    name: str
    flow: str
    due: datetime | None
    started: datetime | None
    ended: datetime | None
    run_seconds: float
    state: str

    @property
    def queued_seconds(self) -> float:
        """From when the task was due to when a worker started it."""
        if self.due is None or self.started is None:
            return 0.0
        return max(0.0, (self.started - self.due).total_seconds())


def task_manager_url() -> str:
    explicit = os.environ.get("INFRAHUB_STACK_TASK_MANAGER_URL")
    if explicit:
        return explicit.rstrip("/")
    host = urlsplit(os.environ.get("INFRAHUB_ADDRESS", "http://127.0.0.1:8000")).hostname or "127.0.0.1"
    return f"http://{host}:4210/api"


class TaskManager:
    def __init__(self, url: str | None = None) -> None:
        self.url = url or task_manager_url()
        self._http = httpx.AsyncClient(timeout=30)
        self._flows: dict[str, str] = {}

    async def close(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        response = await self._http.post(f"{self.url}{path}", json=body)
        response.raise_for_status()
        return response.json()

    async def _flow_name(self, flow_id: str) -> str:
        if flow_id not in self._flows:
            response = await self._http.get(f"{self.url}/flows/{flow_id}")
            self._flows[flow_id] = str(response.json().get("name", "?")) if response.is_success else "?"
        return self._flows[flow_id]

    async def runs(self, *names: str, since: datetime) -> list[TaskRun]:
        """Top-level flow runs started at or after ``since`` whose name contains one of ``names``."""
        found: list[TaskRun] = []
        seen: set[str] = set()
        for name in names:
            body = {
                "flow_runs": {
                    "name": {"like_": f"%{name}%"},
                    "parent_task_run_id": {"is_null_": True},
                    "expected_start_time": {"after_": since.isoformat()},
                },
                "limit": 50,
            }
            try:
                rows = await self._post("/flow_runs/filter", body)
            except httpx.HTTPError:
                continue  # the task manager is optional: figures are reported without it
            for row in rows:
                if row["id"] in seen:
                    continue
                seen.add(row["id"])
                found.append(
                    TaskRun(
                        name=str(row["name"]),
                        flow=await self._flow_name(str(row["flow_id"])),
                        due=_time(row.get("expected_start_time")),
                        started=_time(row.get("start_time")),
                        ended=_time(row.get("end_time")),
                        run_seconds=float(row.get("total_run_time") or 0.0),
                        state=str(row.get("state_type")),
                    )
                )
        return sorted(found, key=lambda r: r.due or since)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


async def caused_by(tasks: TaskManager, texts: list[str], since: datetime) -> dict[str, list[float]]:
    """Task seconds per Infrahub flow, over every flow run (sub-flows included) due since ``since``
    whose name or parameters mention one of ``texts`` (branch names, proposed change names): the
    work Infrahub did for those services, whether anyone waited for it or not."""
    found: dict[str, list[float]] = defaultdict(list)
    offset = 0
    while True:
        body = {
            "flow_runs": {"expected_start_time": {"after_": since.isoformat()}},
            "limit": 200,
            "offset": offset,
        }
        try:
            rows = await tasks._post("/flow_runs/filter", body)
        except httpx.HTTPError:
            return dict(found)
        for row in rows:
            text = str(row.get("name", "")) + json.dumps(row.get("parameters") or {})
            if any(t in text for t in texts):
                found[await tasks._flow_name(str(row["flow_id"]))].append(
                    float(row.get("total_run_time") or 0.0)
                )
        if len(rows) < 200:
            return dict(found)
        offset += 200
