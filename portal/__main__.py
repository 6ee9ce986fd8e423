"""python -m portal [--host H] [--port N] [--insecure-local]: serve the portal.

People sign in: with Infrahub's accounts on the Infrahub backend, with the accounts file
(`factory accounts add NAME --role delivery`) on the embedded one. With no account at all the
portal refuses to start, unless --insecure-local, which lets everyone on 127.0.0.1 do everything
without signing in (one person on their own machine) and is refused on any other address.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
from types import FrameType

# Before Prefect is imported: no telemetry from the ephemeral server, flow logs at WARNING on the
# console (they still reach the Prefect API), as the CLI does.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

import uvicorn

from allocation.settings import FactorySettings
from portal.app import NoAccounts, Security, create_app

HOST = "127.0.0.1"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m portal", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default=os.environ.get("PORTAL_HOST", HOST))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORTAL_PORT", "8080")))
    parser.add_argument(
        "--insecure-local", action="store_true", help="no sign-in, every capability: 127.0.0.1 only"
    )
    args = parser.parse_args(argv)
    settings = FactorySettings()
    if args.insecure_local:
        if not _loopback(args.host):
            sys.exit(f"error: --insecure-local serves 127.0.0.1 only, not {args.host}")
        security = Security(authenticator=None)
    else:
        try:
            security = Security.from_environment(settings)
        except NoAccounts as error:
            sys.exit(f"error: {error}")
    if not os.environ.get("PORTAL_SECRET_KEY"):
        print(
            "portal: PORTAL_SECRET_KEY is not set: sessions are sealed with a key of this process "
            "and end when it stops",
            file=sys.stderr,
        )
    signal.signal(signal.SIGTERM, _exit_normally)
    uvicorn.run(create_app(settings, security), host=args.host, port=args.port, log_level="info")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _exit_normally(signum: int, frame: FrameType | None) -> None:
    # uvicorn shuts down gracefully on SIGTERM, then raises it again with this handler restored.
    # Exiting normally lets atexit run (a Prefect client's cleanup, when PREFECT_API_URL is set).
    raise SystemExit(0)


if __name__ == "__main__":
    main()
