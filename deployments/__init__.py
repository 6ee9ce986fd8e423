"""How the lifecycle flows are served: schedules, event triggers, manual runs from the Prefect UI."""
