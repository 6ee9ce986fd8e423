"""Infrahub checks: the allocation core's rules, run by Infrahub in a proposed change's pipeline.
Nothing here may import Prefect or our CLI.

Infrahub's worker imports a check as ``commits.<sha>.checks.<module>`` without the checkout on
``sys.path``; the generators package knows how to put this commit's checkout first (see
``generators/__init__.py``), so it is imported, from this checkout, before anything imports
``allocation``.
"""

from __future__ import annotations

import importlib

if __name__ != "checks":
    importlib.import_module(__name__.rpartition(".")[0] + ".generators")
