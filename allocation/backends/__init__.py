"""Implementations of the inventory port. Chosen by configuration (see ``allocation.settings``)."""
