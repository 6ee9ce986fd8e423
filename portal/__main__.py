"""python -m portal [--port N]: serve the portal on 127.0.0.1 (port: --port, PORTAL_PORT, 8080)."""

from __future__ import annotations

import argparse
import os
import signal
from types import FrameType

# Before Prefect is imported: no telemetry from the ephemeral server, flow logs at WARNING on the
# console (they still reach the Prefect API), as the CLI does.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import uvicorn

from allocation.settings import FactorySettings
from portal.app import create_app

HOST = "127.0.0.1"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m portal", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORTAL_PORT", "8080")))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_normally)
    uvicorn.run(create_app(FactorySettings()), host=HOST, port=args.port, log_level="info")


def _exit_normally(signum: int, frame: FrameType | None) -> None:
    # uvicorn shuts down gracefully on SIGTERM, then raises it again with this handler restored.
    # Exiting normally lets atexit run, where Prefect stops the ephemeral API server it started
    # for the flows; under the default handler that server would outlive the portal.
    raise SystemExit(0)


if __name__ == "__main__":
    main()
