from ipaddress import IPv4Interface, IPv4Network

import pytest
from pydantic import ValidationError

from allocation import intent, policy
from allocation.intent import IpPackage, ServiceRequest, ServiceStatus
from allocation.model import Port


def port(device_index: int, name: str, speed: int) -> Port:
    return Port(
        id=f"sw0{device_index}:{name}",
        device=f"sw0{device_index}-par01",
        name=name,
        speed_mbps=speed,
        device_index=device_index,
    )


@pytest.mark.parametrize(
    ("package", "length", "usable"), [("small", 29, 6), ("medium", 28, 14), ("large", 27, 30)]
)
def test_prefix_size_follows_the_package(package: str, length: int, usable: int) -> None:
    assert policy.prefix_length(IpPackage(package)) == length
    assert policy.usable_hosts(length) == usable


def test_gateway_is_the_first_usable_host() -> None:
    assert policy.gateway_address(IPv4Network("203.0.113.8/29")) == IPv4Interface("203.0.113.9/29")


def test_port_choice_balances_switches_by_load() -> None:
    ports = [port(1, "Ethernet4", 1000), port(2, "Ethernet4", 1000)]
    assert policy.choose_port(ports, {}, 1000) == ports[0]  # tie: index 1
    assert policy.choose_port(ports, {1: 1}, 1000) == ports[1]
    assert policy.choose_port(ports, {1: 3, 2: 3}, 1000) == ports[0]


def test_port_choice_respects_speed_and_keeps_fast_ports_for_fast_services() -> None:
    ports = [port(1, "Ethernet8", 10000), port(1, "Ethernet4", 1000)]
    assert policy.choose_port(ports, {}, 100) == ports[1]
    assert policy.choose_port(ports, {}, 10000) == ports[0]
    assert policy.choose_port([port(1, "Ethernet4", 1000)], {}, 10000) is None


def test_port_choice_falls_back_to_the_other_switch_when_the_balanced_one_cannot_serve() -> None:
    ports = [port(1, "Ethernet4", 1000), port(2, "Ethernet8", 10000)]
    assert policy.choose_port(ports, {2: 5}, 10000) == ports[1]


def test_port_choice_uses_natural_order_and_is_deterministic() -> None:
    ports = [port(1, "Ethernet10", 1000), port(1, "Ethernet9", 1000)]
    assert policy.choose_port(ports, {}, 1000) == ports[1]
    assert policy.choose_port(list(reversed(ports)), {}, 1000) == ports[1]


def test_only_core_switch_indexes_carry_customers() -> None:
    assert policy.choose_port([port(3, "Ethernet4", 1000)], {}, 100) is None


def test_site_pools_prefer_a_pool_named_for_the_site() -> None:
    names = {"Customer vlan pool", "Customer prefixes pool", "Customer vlan pool ams01"}
    assert policy.site_pools("par01", names, {"default", "par01"}) == (
        "Customer vlan pool",
        "Customer prefixes pool",
        "default",
    )
    assert policy.site_pools("ams01", names, {"default", "ams01"}) == (
        "Customer vlan pool ams01",
        "Customer prefixes pool",
        "ams01",
    )


@pytest.mark.parametrize("bad", ["dia-0042x", "DIA_0042", "", "D-1", "DIA-", "DIA-0042; DROP"])
def test_malformed_identifiers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="service_identifier"):
        ServiceRequest(
            service_identifier=bad, account_reference="A", site="par01", bandwidth="1000", ip_package="small"
        )


def test_identifier_and_site_are_normalised() -> None:
    request = ServiceRequest(
        service_identifier=" dia-0042 ",
        account_reference="A",
        site="PAR01",
        bandwidth="100",
        ip_package="large",
    )
    assert (request.service_identifier, request.site) == ("DIA-0042", "par01")


def test_the_seeds_misspelled_statuses_are_read_as_aliases() -> None:
    assert ServiceStatus.parse("in-decomissioning") is ServiceStatus.IN_DECOMMISSIONING
    assert ServiceStatus.parse("decomissioned") is ServiceStatus.DECOMMISSIONED
    assert "decomissioned" not in {s.value for s in ServiceStatus}


@pytest.mark.parametrize(
    ("identifier", "transition", "attempt", "branch"),
    [
        ("DIA-0042", "deliver", 1, "dia-0042-deliver"),
        ("DIA-0042", "deliver", 2, "dia-0042-deliver-2"),
        ("BIZ9-7", "modify", 1, "biz9-7-modify"),
        ("DIA-0042", "decommission", 12, "dia-0042-decommission-12"),
    ],
)
def test_review_branches_are_named_for_service_transition_and_attempt(
    identifier: str, transition: policy.TransitionName, attempt: int, branch: str
) -> None:
    assert policy.branch_name(identifier, transition, attempt) == branch
    assert policy.parse_branch(branch) == (identifier, transition, attempt)
    assert policy.attempt_of(branch, identifier, transition) == attempt


@pytest.mark.parametrize(
    "branch",
    [
        "main",
        "dia-0042",
        "dia-0042-deliver-",
        "dia-0042-deliverx",
        "dia-0042-retire",
        "DIA-0042-deliver",
        "d-0042-deliver",
        "dia0042-deliver",
        "dia-0042-deliver-two",
        "x-dia-0042-deliver",
        "dia-0042-deliver-2-extra",
    ],
)
def test_other_branches_are_not_review_branches(branch: str) -> None:
    assert policy.parse_branch(branch) is None


def test_a_refused_request_gets_one_readable_message_per_field() -> None:
    with pytest.raises(ValidationError) as refused:
        ServiceRequest.model_validate(
            {
                "service_identifier": "dia 42",
                "account_reference": "",
                "site": "Paris!",
                "bandwidth": "2000",
                "ip_package": "huge",
            }
        )
    assert intent.field_messages(refused.value) == {
        "service_identifier": "must look like DIA-0042: an upper-case product prefix, a dash, digits",
        "account_reference": "give the customer account (1 to 64 characters), e.g. ACC-1234",
        "site": "give a site short name such as par01 (lower-case letters, digits, dashes)",
        "bandwidth": "choose 100 (100M), 1000 (1G) or 10000 (10G)",
        "ip_package": "choose small, medium or large",
    }
    with pytest.raises(ValidationError) as unknown:
        ServiceRequest.model_validate(["not", "a", "mapping"])
    assert intent.field_messages(unknown.value) == {
        "": "Input should be a valid dictionary or instance of ServiceRequest"
    }
