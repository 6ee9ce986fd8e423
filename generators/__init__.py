"""Infrahub generators: the same allocation core, run by Infrahub itself (proposed change pipeline,
``infrahubctl generator``). Nothing here may import Prefect or our CLI.

``infrahubctl`` imports this package as ``generators`` from the repository root. Infrahub's worker
imports it from the repository's directory as ``commits.<sha>.generators`` (the checkout of one
commit), and that checkout is not on ``sys.path``: ``import allocation`` would fail and the
repository import ends in ``error-import``. So, only in that case, the checkout goes first on
``sys.path``, and ``allocation``/``generators`` modules a long-lived worker imported from another
checkout (an earlier commit) are forgotten, so this commit's core is the one that runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ != "generators":
    _checkout = str(Path(__file__).resolve().parent.parent)
    for _name in [n for n in sys.modules if n.split(".")[0] in ("allocation", "generators")]:
        if not (getattr(sys.modules[_name], "__file__", None) or "").startswith(_checkout + os.sep):
            del sys.modules[_name]
    if _checkout in sys.path:
        sys.path.remove(_checkout)
    sys.path.insert(0, _checkout)
