"""The pages service delivery uses: the request list, the request form and one service."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from allocation.core import Plan
from allocation.errors import AllocationError, UnknownService
from allocation.intent import Bandwidth, IpPackage, is_valid_identifier
from allocation.inventory import Inventory
from portal import delivery
from portal.deps import InventoryDep, SettingsDep, templates

router = APIRouter()

BANDWIDTHS = [(Bandwidth.M100, "100M"), (Bandwidth.G1, "1G"), (Bandwidth.G10, "10G")]
PACKAGES = [
    (IpPackage.SMALL, "small: 6 IPs (/29)"),
    (IpPackage.MEDIUM, "medium: 14 IPs (/28)"),
    (IpPackage.LARGE, "large: 30 IPs (/27)"),
]

FormField = Annotated[str, Form()]


@router.get("/", response_class=HTMLResponse)
async def request_list(request: Request, inventory: InventoryDep, requested: str | None = None) -> Response:
    rows = await delivery.rows(inventory)
    confirmed = None
    if requested is not None and is_valid_identifier(requested):
        confirmed = next((r for r in rows if r.service.service_identifier == requested), None)
    return templates.TemplateResponse(request, "list.html", {"rows": rows, "confirmed": confirmed})


@router.get("/requests/new", response_class=HTMLResponse)
async def new_request(request: Request, inventory: InventoryDep) -> Response:
    return await _form(request, inventory, {})


@router.post("/requests/preview", response_class=HTMLResponse)
async def preview(
    request: Request,
    inventory: InventoryDep,
    service_identifier: FormField = "",
    account_reference: FormField = "",
    site: FormField = "",
    bandwidth: FormField = "",
    ip_package: FormField = "",
) -> Response:
    fields = _fields(service_identifier, account_reference, site, bandwidth, ip_package)
    try:
        plan = await delivery.preview(delivery.parse(fields), inventory)
    except delivery.FormErrors as error:
        return await _form(request, inventory, fields, errors=error.errors)
    except AllocationError as error:
        return await _form(request, inventory, fields, errors={delivery.field_of(error): str(error)})
    return await _form(request, inventory, fields, plan=plan, status_code=200)


@router.post("/requests", response_class=HTMLResponse)
async def submit(
    request: Request,
    inventory: InventoryDep,
    settings: SettingsDep,
    service_identifier: FormField = "",
    account_reference: FormField = "",
    site: FormField = "",
    bandwidth: FormField = "",
    ip_package: FormField = "",
) -> Response:
    fields = _fields(service_identifier, account_reference, site, bandwidth, ip_package)
    try:
        service_request = delivery.parse(fields)
        result = await delivery.submit(service_request, inventory, settings)
    except delivery.FormErrors as error:
        return await _form(request, inventory, fields, errors=error.errors)
    except AllocationError as error:
        return await _form(request, inventory, fields, errors={delivery.field_of(error): str(error)})
    # POST-redirect-GET: a reload of the list does not submit the request again.
    url = request.url_for("request_list").include_query_params(requested=result.service_identifier)
    return RedirectResponse(str(url), status_code=303)


@router.get("/services/{identifier}", response_class=HTMLResponse)
async def service_page(request: Request, identifier: str, inventory: InventoryDep) -> Response:
    try:
        row = await delivery.row(identifier, inventory)
    except UnknownService as error:
        return templates.TemplateResponse(
            request, "error.html", {"title": "No such service", "message": str(error)}, status_code=404
        )
    return templates.TemplateResponse(request, "service.html", {"row": row})


def _fields(identifier: str, account: str, site: str, bandwidth: str, package: str) -> dict[str, str]:
    return {
        "service_identifier": identifier,
        "account_reference": account,
        "site": site,
        "bandwidth": bandwidth,
        "ip_package": package,
    }


async def _form(
    request: Request,
    inventory: Inventory,
    fields: dict[str, str],
    *,
    errors: dict[str, str] | None = None,
    plan: Plan | None = None,
    status_code: int | None = None,
) -> Response:
    context: dict[str, Any] = {
        "fields": fields,
        "errors": errors or {},
        "plan": plan,
        "sites": await delivery.sites(inventory),
        "bandwidths": BANDWIDTHS,
        "packages": PACKAGES,
    }
    # A refused form is an unprocessable request for the client too, not a 200.
    code = status_code or (422 if errors else 200)
    return templates.TemplateResponse(request, "form.html", context, status_code=code)
