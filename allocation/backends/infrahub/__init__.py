"""The Infrahub backend of the inventory port (infrahub-sdk against a live Infrahub 1.4)."""

from allocation.backends.infrahub.backend import InfrahubInventory

__all__ = ["InfrahubInventory"]
