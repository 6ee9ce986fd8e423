"""The pages service delivery uses: the request list, the request form, one service (with its
modify and decommission forms) and capacity."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from allocation import architect, history
from allocation.core import Plan
from allocation.errors import AllocationError, UnknownService
from allocation.intent import Bandwidth, IpPackage, ServiceStatus, is_valid_identifier
from allocation.inventory import Inventory
from allocation.policy import TransitionName
from allocation.results import TransitionResult
from allocation.settings import FactorySettings
from allocation.steps import Changes
from portal import delivery
from portal.auth import Identity
from portal.deps import (
    Approver,
    Changer,
    InventoryDep,
    Requester,
    SettingsDep,
    Viewer,
    form_guard,
    templates,
)

router = APIRouter()

BANDWIDTHS = [(Bandwidth.M100, "100M"), (Bandwidth.G1, "1G"), (Bandwidth.G10, "10G")]
PACKAGES = [
    (IpPackage.SMALL, "small: 6 IPs (/29)"),
    (IpPackage.MEDIUM, "medium: 14 IPs (/28)"),
    (IpPackage.LARGE, "large: 30 IPs (/27)"),
]

FormField = Annotated[str, Form(max_length=200)]
REQUEST_FIELDS = ("service_identifier", "account_reference", "site", "bandwidth", "ip_package")
RequestForm = Annotated[None, Depends(form_guard(*REQUEST_FIELDS))]
ModifyForm = Annotated[None, Depends(form_guard("bandwidth", "ip_package"))]
DecommissionForm = Annotated[None, Depends(form_guard("confirm"))]
DecisionForm = Annotated[None, Depends(form_guard())]


@router.get("/", response_class=HTMLResponse)
async def request_list(
    request: Request,
    me: Viewer,
    inventory: InventoryDep,
    status: Annotated[str, Query(max_length=32, description="only services in this status")] = "",
    site: Annotated[str, Query(max_length=32, description="only services at this site")] = "",
    page: Annotated[int, Query(ge=1, le=1_000_000, description="page number, from 1")] = 1,
    requested: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    try:
        filters = delivery.filters(status, site)
    except ValueError as error:
        return templates.TemplateResponse(
            request, "error.html", {"title": "Unknown filter", "message": str(error)}, status_code=400
        )
    listing = await delivery.page(inventory, filters, page)
    confirmed = None
    if requested is not None and is_valid_identifier(requested):
        try:
            confirmed = await delivery.row(requested, inventory)
        except UnknownService:
            confirmed = None
    context = {
        "page": listing,
        "filters": filters,
        "statuses": list(ServiceStatus),
        "sites": await delivery.sites(inventory),
        "confirmed": confirmed,
        "page_url": lambda number: _list_url(request, filters, number),
    }
    return templates.TemplateResponse(request, "list.html", context)


def _list_url(request: Request, filters: delivery.Filters, number: int) -> str:
    params: dict[str, Any] = {}
    if filters.status is not None:
        params["status"] = filters.status.value
    if filters.site is not None:
        params["site"] = filters.site
    if number > 1:
        params["page"] = number
    url = request.url_for("request_list")
    return str(url.include_query_params(**params)) if params else str(url)


@router.get("/requests/new", response_class=HTMLResponse)
async def new_request(request: Request, me: Requester, inventory: InventoryDep) -> Response:
    return await _form(request, inventory, {})


@router.post("/requests/preview", response_class=HTMLResponse)
async def preview(
    request: Request,
    me: Requester,
    _: RequestForm,
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
    me: Requester,
    _: RequestForm,
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
        result = await delivery.submit(service_request, inventory, settings, requested_by=me.name)
    except delivery.FormErrors as error:
        return await _form(request, inventory, fields, errors=error.errors)
    except AllocationError as error:
        return await _form(request, inventory, fields, errors={delivery.field_of(error): str(error)})
    # POST-redirect-GET: a reload of the list does not submit the request again.
    url = request.url_for("request_list").include_query_params(requested=result.service_identifier)
    return RedirectResponse(str(url), status_code=303)


@router.get("/services/{identifier}", response_class=HTMLResponse)
async def service_page(
    request: Request,
    identifier: str,
    me: Viewer,
    inventory: InventoryDep,
    asked: Annotated[TransitionName | None, Query(description="the change just asked for")] = None,
    decided: Annotated[TransitionName | None, Query(description="the transition just decided")] = None,
) -> Response:
    # Only a transition name comes from the URL; what the page says is read from the inventory.
    notice = f"{decided}: your decision is recorded (see the proposed changes below)" if decided else None
    return await _service(request, identifier, inventory, asked=asked, notice=notice)


@router.post("/services/{identifier}/modify", response_class=HTMLResponse)
async def modify(
    request: Request,
    identifier: str,
    me: Changer,
    _: ModifyForm,
    inventory: InventoryDep,
    settings: SettingsDep,
    bandwidth: FormField = "",
    ip_package: FormField = "",
) -> Response:
    try:
        changes = delivery.parse_changes(bandwidth, ip_package)
    except delivery.FormErrors as error:
        return await _service(request, identifier, inventory, errors=error.errors, status_code=422)
    return await _transition(request, "modify", identifier, inventory, settings, changes)


@router.post("/services/{identifier}/decommission", response_class=HTMLResponse)
async def decommission(
    request: Request,
    identifier: str,
    me: Changer,
    _: DecommissionForm,
    inventory: InventoryDep,
    settings: SettingsDep,
) -> Response:
    return await _transition(request, "decommission", identifier, inventory, settings)


@router.post("/services/{identifier}/approve", response_class=HTMLResponse)
async def approve(
    request: Request, identifier: str, me: Approver, _: DecisionForm, inventory: InventoryDep
) -> Response:
    """As the architect: merge the open proposed change (Infrahub checks this account may merge)."""
    return await _decide(request, identifier, "merge", me, inventory)


@router.post("/services/{identifier}/reject", response_class=HTMLResponse)
async def reject(
    request: Request, identifier: str, me: Approver, _: DecisionForm, inventory: InventoryDep
) -> Response:
    """As the architect: close the open proposed change; what its branch took is given back."""
    return await _decide(request, identifier, "close", me, inventory)


async def _decide(
    request: Request, identifier: str, decision: architect.Decision, me: Identity, inventory: Inventory
) -> Response:
    if not is_valid_identifier(identifier):
        return _malformed(request, identifier)
    try:
        result = await architect.decide(identifier, decision, inventory, by=me.name)
    except UnknownService as error:
        return _not_found(request, str(error))
    except AllocationError as error:
        return await _service(request, identifier, inventory, errors={"": str(error)}, status_code=409)
    # POST-redirect-GET: a reload does not decide again.
    url = request.url_for("service_page", identifier=identifier).include_query_params(
        decided=result.transition
    )
    return RedirectResponse(str(url), status_code=303)


async def _transition(
    request: Request,
    name: TransitionName,
    identifier: str,
    inventory: Inventory,
    settings: FactorySettings,
    changes: Changes | None = None,
) -> Response:
    if not is_valid_identifier(identifier):
        return _malformed(request, identifier)
    try:
        result: TransitionResult = await delivery.change(name, identifier, inventory, settings, changes)
    except UnknownService as error:
        return _not_found(request, str(error))
    except AllocationError as error:
        field = delivery.field_of(error) if name == "modify" else ""
        errors = {"" if field == "service_identifier" else field: str(error)}
        return await _service(request, identifier, inventory, errors=errors, form=name, status_code=422)
    if result.branch is None:  # nothing to do: say so on the page, nothing was recorded
        return await _service(request, identifier, inventory, notice=result.message, form=name)
    url = request.url_for("service_page", identifier=identifier).include_query_params(asked=name)
    return RedirectResponse(str(url), status_code=303)


async def _service(
    request: Request,
    identifier: str,
    inventory: Inventory,
    *,
    asked: str | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    form: str | None = None,
    status_code: int = 200,
) -> Response:
    if not is_valid_identifier(identifier.strip().upper()):
        return _malformed(request, identifier)
    try:
        row = await delivery.row(identifier, inventory)
    except UnknownService as error:
        return _not_found(request, str(error))
    proposed = await delivery.proposed(row, inventory)
    context = {
        "row": row,
        "decisions": await history.decisions(row.service.service_identifier, inventory),
        "holdings": delivery.holdings(row, proposed),
        "configurations": delivery.configurations(row.service, proposed),
        "bandwidths": BANDWIDTHS,
        "packages": PACKAGES,
        "asked": asked if row.review is not None and row.review.transition == asked else None,
        "errors": errors or {},
        "notice": notice,
        "form": form,
    }
    return templates.TemplateResponse(request, "service.html", context, status_code=status_code)


def _malformed(request: Request, identifier: str) -> Response:
    message = f"{identifier[:40]!r} is not a service identifier: they look like DIA-0042"
    return templates.TemplateResponse(
        request, "error.html", {"title": "Malformed identifier", "message": message}, status_code=400
    )


def _not_found(request: Request, message: str) -> Response:
    return templates.TemplateResponse(
        request, "error.html", {"title": "No such service", "message": message}, status_code=404
    )


@router.get("/capacity", response_class=HTMLResponse)
async def capacity(request: Request, me: Viewer, inventory: InventoryDep) -> Response:
    ports, pools = await delivery.capacity(inventory)
    by_site: dict[str, list[delivery.SwitchPorts]] = {}
    for switch in ports:
        by_site.setdefault(switch.site, []).append(switch)
    return templates.TemplateResponse(request, "capacity.html", {"sites": by_site, "pools": pools})


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
