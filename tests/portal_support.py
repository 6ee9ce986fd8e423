"""The portal as a browser or a CRM sees it, for the portal's tests: a signed-in client that sends
forms with their CSRF token, accounts, and helpers that read pages as a person does."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi.testclient import TestClient

from allocation import architect
from allocation.backends.embedded import EmbeddedInventory
from allocation.model import PoolUsage
from tests.support import DATA

T = TypeVar("T")

DIA_0042 = {
    "service_identifier": "DIA-0042",
    "account_reference": "ACC-9",
    "site": "par01",
    "bandwidth": "1000",
    "ip_package": "medium",
}


def load(path: Path, data: Path = DATA) -> Path:
    inventory = EmbeddedInventory(path)
    inventory.load(data)
    asyncio.run(inventory.close())
    return path


PASSWORD = "correct horse battery"
PEOPLE = {"dora": ["delivery"], "archie": ["architect"], "vera": ["viewer"]}


class Portal(TestClient):
    """A browser's view of the portal: HTTPS (the session cookie is Secure), signed in as someone,
    sending each form with the CSRF token the pages carry."""

    def sign_in(self, name: str) -> Portal:
        answer = self.post("/api/session", json={"username": name, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return self

    def csrf(self) -> str:
        found = re.search(r'<meta name="csrf-token" content="([^"]+)">', self.get("/login").text)
        assert found, "no CSRF token on the page"
        return found.group(1)

    def submit(self, url: str, data: dict[str, str], **kwargs: object) -> Any:
        return self.post(url, data={**data, "csrf_token": self.csrf()}, **kwargs)  # type: ignore[arg-type]


def read(db: Path, work: Callable[[EmbeddedInventory], Awaitable[T]]) -> T:
    async def main() -> T:
        inventory = EmbeddedInventory(db)
        try:
            return await work(inventory)
        finally:
            await inventory.close()

    return asyncio.run(main())


def pools(db: Path) -> list[PoolUsage]:
    return read(db, lambda inv: inv.pool_usage())


def approve(db: Path, identifier: str) -> None:
    """The architect merges the open proposed change (in Infrahub, in production)."""

    async def work(inventory: EmbeddedInventory) -> None:
        await architect.decide(identifier, "merge", inventory)

    read(db, work)


def text(html: str) -> str:
    """What a person reads: tags dropped, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def table_rows(html: str, table_id: str) -> dict[str, list[str]]:
    """A table of the page as {first cell: the other cells}, as a person reads it."""
    found = re.search(rf'<table[^>]*id="{table_id}"[^>]*>(.*?)</table>', html, re.S)
    assert found, f"no table {table_id}"
    rows = {}
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", found.group(1), re.S):
        cells = [text(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)]
        if cells:
            rows[cells[0]] = cells[1:]
    return rows
