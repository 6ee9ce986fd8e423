"""Several mutations in one GraphQL document: one round trip, run by Infrahub in the given order.

Each mutation commits on its own, so a document is not a transaction: every caller builds its
document from what is still missing, and running it again after a partial failure finishes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Op:
    mutation: str
    input_type: str
    data: dict[str, Any]


def create(kind: str, data: dict[str, Any]) -> Op:
    return Op(f"{kind}Create", f"{kind}CreateInput", data)


def update(kind: str, data: dict[str, Any]) -> Op:
    return Op(f"{kind}Update", f"{kind}UpdateInput", data)


def delete(kind: str, node_id: str) -> Op:
    return Op(f"{kind}Delete", "DeleteInput", {"id": node_id})


def document(ops: list[Op]) -> tuple[str, dict[str, Any]]:
    """The GraphQL text and variables of ``ops`` as one mutation request."""
    declarations = ", ".join(f"$d{i}: {op.input_type}!" for i, op in enumerate(ops))
    body = "\n".join(f"  m{i}: {op.mutation}(data: $d{i}) {{ ok }}" for i, op in enumerate(ops))
    return f"mutation Batch({declarations}) {{\n{body}\n}}", {f"d{i}": op.data for i, op in enumerate(ops)}


def attr(value: Any) -> dict[str, Any]:
    return {"value": value}


def ref(node_id: str) -> dict[str, Any]:
    return {"id": node_id}


def hfid(*parts: str | int) -> dict[str, Any]:
    return {"hfid": [str(p) for p in parts]}
