"""One Prefect flow per lifecycle transition, run from the declarations of ``allocation/transitions.py``.

- ``deliver``, ``modify``, ``decommission`` (``flows/<name>.py``): the declared steps as tasks in the
  core's frame (``flows/engine.py``); a deployed run suspends while its proposed change is reviewed;
- ``request``: records a draft service (and announces it for the deliver deployment's trigger);
- ``reconcile``: concludes decided transitions, resumes suspended runs, reports leaks;
- ``flows/submit.py``: how the CLI and the portal run a transition (plain runner, deployment, or
  in-process flow, by configuration).

Importing this package imports no Prefect: clients that run without a Prefect server stay fast.
The backend is configuration (FACTORY_BACKEND / FACTORY_DB), read by each flow run.
"""

import os

# Set before Prefect reads its settings: the ephemeral server's telemetry locks its SQLite at startup.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
