"""Requests of one generator run, counted by a proxy in front of Infrahub, as the issue counted the
original demo's generator (22 requests: 12 reads, 9 writes, 1 schema read).

Runs ``infrahubctl generator dedicated_internet --branch B service_identifier=ID site=S`` from the repository
root with ``INFRAHUB_ADDRESS`` pointing at a small counting proxy, for a draft service on a branch of
its own: once to implement it, once more (everything in place). Then, for another draft service, the
generator as Infrahub's worker runs it in a proposed change's pipeline: the generator class called
in-process through an SDK client of its own, with the query's answer and the definition's parameters,
without infrahubctl's own schema read. Then gives back what it took.

    python -m bench.generator_roundtrips
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import uvicorn
from infrahub_sdk import Config, InfrahubClient
from infrahub_sdk.node import InfrahubNode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from allocation import intake
from allocation.backends.infrahub import InfrahubInventory
from allocation.intent import Bandwidth, IpPackage, ServiceRequest
from allocation.settings import InfrahubSettings
from generators.dedicated_internet import QUERY_FILE, DedicatedInternetGenerator

ROOT = Path(__file__).resolve().parent.parent
INFRAHUBCTL = Path(sys.executable).parent / "infrahubctl"
SITE = "par01"
OPERATION = re.compile(r"^\s*(query|mutation)\b")


class CountingProxy:
    """Forwards every request to Infrahub and counts it: schema reads, GraphQL reads and writes."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[str] = []
        self.port = _free_port()
        app = Starlette(
            routes=[Route("/{path:path}", self._forward, methods=["GET", "POST", "PUT", "DELETE"])]
        )
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        while not self._server.started:
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    async def _forward(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        if path.startswith("/api/schema"):
            kind = "schema read"
        elif path.startswith("/graphql") or path.startswith("/api/query"):
            query = (
                str(json.loads(body or b"{}").get("query", "")) if path.startswith("/graphql") else "query"
            )
            found = OPERATION.match(query)
            kind = "write" if found and found.group(1) == "mutation" else "read"
        else:
            kind = f"other {request.method} {path}"
        self.seen.append(kind)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with httpx.AsyncClient(timeout=300) as client:
            answer = await client.request(
                request.method,
                f"{self.upstream}{path}",
                params=request.query_params,
                content=body,
                headers=headers,
            )
        drop = ("content-encoding", "content-length", "transfer-encoding", "connection")
        return Response(
            answer.content,
            answer.status_code,
            {k: v for k, v in answer.headers.items() if k.lower() not in drop},
        )

    def take(self) -> Counter[str]:
        counted, self.seen = Counter(self.seen), []
        return counted


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_generator(proxy: CountingProxy, branch: str, identifier: str) -> str:
    process = await asyncio.create_subprocess_exec(
        str(INFRAHUBCTL),
        "generator",
        "dedicated_internet",
        "--branch",
        branch,
        f"service_identifier={identifier}",
        f"site={SITE}",  # the parameters Infrahub's pipeline passes (.infrahub.yml)
        cwd=ROOT,
        env={**os.environ, "INFRAHUB_ADDRESS": proxy.address, "COLUMNS": "250"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(out.decode())
    return out.decode()


async def run_as_infrahub_does(proxy: CountingProxy, branch: str, identifier: str) -> None:
    """What Infrahub's worker does for one target: run the definition's query with the target's
    parameters, then the generator class with its answer (``InfrahubGenerator.run``). The query is sent
    from the local file: the registered repository's copy may be older than this checkout."""
    params = {"service_identifier": identifier, "site": SITE}
    client = InfrahubClient(
        config=Config(address=proxy.address, api_token=os.environ.get("INFRAHUB_API_TOKEN"), timeout=300)
    )
    data = await client.execute_graphql(query=QUERY_FILE.read_text(), variables=params, branch_name=branch)
    generator = DedicatedInternetGenerator(
        query="dedicated_internet",
        client=client,
        infrahub_node=InfrahubNode,
        branch=branch,
        params=params,
        execute_in_proposed_change=True,
        execute_after_merge=False,
    )
    await generator.run(identifier="dedicated_internet", data=data)


async def main() -> dict[str, dict[str, int]]:
    inventory = InfrahubInventory.from_settings(InfrahubSettings())
    stamp = int(time.time()) % 100000
    identifier, other = f"GR{stamp}-0001", f"GR{stamp}-0002"
    branch = f"gen-{identifier.lower()}"
    figures: dict[str, dict[str, int]] = {}
    try:
        for service in (identifier, other):
            await intake.record(
                ServiceRequest(
                    service_identifier=service,
                    account_reference="ACC-GEN",
                    site=SITE,
                    bandwidth=Bandwidth.G1,
                    ip_package=IpPackage.SMALL,
                ),
                inventory,
            )
        await inventory.create_branch(branch)
        with CountingProxy(inventory.address) as proxy:
            for name in ("implements the service", "finds everything in place"):
                output = await run_generator(proxy, branch, identifier)
                counted = proxy.take()
                figures[name] = dict(counted) | {"total": sum(counted.values())}
                print(f"infrahubctl: generator run that {name}: {figures[name]}")
                print("   ", output.strip().splitlines()[-1][:200] if output.strip() else "")
            name = "implements a service as Infrahub's worker runs it"
            await run_as_infrahub_does(proxy, branch, other)
            counted = proxy.take()
            figures[name] = dict(counted) | {"total": sum(counted.values())}
            print(f"in-process: generator run that {name}: {figures[name]}")
        implemented = await inventory.get_service(other, branch)
        assert implemented is not None and implemented.implementation.complete, implemented
    finally:
        for service in (identifier, other):
            await inventory.discard_changes(service, branch=branch)
        await inventory._gql(  # the bench's own branch
            "mutation($n: String!) { BranchDelete(data: {name: $n}, wait_until_completion: false) { ok } }",
            {"n": branch},
        )
        await inventory.close()
    return figures


if __name__ == "__main__":
    if not os.environ.get("INFRAHUB_ADDRESS"):
        sys.exit("INFRAHUB_ADDRESS is not set")
    asyncio.run(main())
