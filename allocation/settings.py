"""Which inventory backend to use is configuration, never code: FACTORY_BACKEND and friends."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from allocation.inventory import Inventory


class FactorySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACTORY_", extra="ignore")

    backend: Literal["embedded", "infrahub"] = "embedded"
    db: Path | None = Field(default=None, description="SQLite file of the embedded backend")
    data: Path = Field(
        default=Path(__file__).resolve().parent.parent / "data", description="bootstrap object files"
    )


class InfrahubSettings(BaseSettings):
    """Read with the SDK's own variable names, so one environment serves infrahubctl and us."""

    model_config = SettingsConfigDict(env_prefix="INFRAHUB_", extra="ignore")

    address: str = "http://127.0.0.1:8000"
    api_token: SecretStr | None = None
    timeout: int = 60


def open_inventory(settings: FactorySettings | None = None, *, access_token: str | None = None) -> Inventory:
    """The configured inventory; on Infrahub, ``access_token`` (a person's JWT from Infrahub's login)
    makes every call that person's instead of the API token's account."""
    settings = settings or FactorySettings()
    if settings.backend == "infrahub":
        from allocation.backends.infrahub import InfrahubInventory  # type: ignore[import-not-found,unused-ignore]  # noqa: I001

        inventory: Inventory = InfrahubInventory.from_settings(InfrahubSettings(), access_token=access_token)
        return inventory
    from allocation.backends.embedded import EmbeddedInventory

    return EmbeddedInventory(settings.db)
