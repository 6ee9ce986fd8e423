"""What every route is given: the inventory of this request, opened from the app's settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates

from allocation.inventory import Inventory
from allocation.settings import FactorySettings, open_inventory

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")


def settings_of(request: Request) -> FactorySettings:
    settings: FactorySettings = request.app.state.settings
    return settings


async def inventory_of(request: Request) -> AsyncIterator[Inventory]:
    """One inventory per HTTP request, closed when the response is done: no state between requests."""
    inventory = open_inventory(settings_of(request))
    try:
        yield inventory
    finally:
        await inventory.close()


InventoryDep = Annotated[Inventory, Depends(inventory_of)]
SettingsDep = Annotated[FactorySettings, Depends(settings_of)]
