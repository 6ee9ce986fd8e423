from allocation.backends.embedded.backend import EmbeddedInventory, default_path

__all__ = ["EmbeddedInventory", "default_path"]
