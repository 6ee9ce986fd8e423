"""The GraphQL documents the backend sends. Each one is a single round trip.

A step's read is one document with aliases (``view``): the service as the branch holds it with
its reservations, the proposed changes of its branches and, when the step allocates, its site's
devices with their free customer ports, the site's port reservations, the site's pools and what
they have left. Writes that belong together go in one document as aliased mutations, which
Infrahub runs one after the other (``mutations.document``).
"""

from __future__ import annotations

from allocation import policy

SERVICE_KIND = "ServiceDedicatedInternet"
RESERVATION_KIND = "ServiceReservation"
RESERVATION_ATTRIBUTES = ("resource", "kind", "service_identifier", "claimed_on", "released_on")
RESERVATION_FIELDS = "id " + " ".join(f"{name} {{ value }}" for name in RESERVATION_ATTRIBUTES)

# A service with what it holds on the branch the query runs on.
SERVICE_FIELDS = """
  id
  service_identifier { value }
  account_reference { value }
  requested_by { value }
  status { value }
  bandwidth { value }
  ip_package { value }
  location { node { shortname { value } } }
  vlan { node { id vlan_id { value } name { value } status { value } l2domain { node { name { value } } } } }
  prefix { node { id prefix { value } } }
  dedicated_interfaces {
    edges {
      node {
        id
        __typename
        name { value }
        speed { value }
        device { node { id name { value } index { value } } }
        ... on DcimInterfaceL2 {
          enabled { value }
          status { value }
          l2_mode { value }
          description { value }
          untagged_vlan { node { id vlan_id { value } } }
        }
        ... on DcimInterfaceL3 {
          vlan { node { id vlan_id { value } } }
          ip_addresses { edges { node { id address { value } } } }
        }
      }
    }
  }
"""

# A mutation's answer with the service as SERVICE reads it: the last mutation of a step's write
# document, so that the next step starts from it (Infrahub runs a document's mutations in order).
SERVICE_ANSWER = f"ok object {{ {SERVICE_FIELDS} }}"


PROPOSED_CHANGE_FIELDS = """
  id
  name { value }
  description { value }
  source_branch { value }
  state { value }
"""
# In reads, the account that last set the state: who merged or closed the change (Infrahub records
# it). Never in a mutation's answer: Infrahub counts every kind a mutation selects as written, and an
# account kind as account management.
PROPOSED_CHANGE_READ_FIELDS = PROPOSED_CHANGE_FIELDS.replace(
    "state { value }", "state { value updated_by { ... on CoreGenericAccount { name { value } } } }"
)


def _expand(text: str) -> str:
    return (
        text.replace("@SERVICE@", SERVICE_FIELDS)
        .replace("@CHANGE_READ@", PROPOSED_CHANGE_READ_FIELDS)
        .replace("@CHANGE@", PROPOSED_CHANGE_FIELDS)
        .replace("@RESERVATION@", RESERVATION_FIELDS)
    )


# A service with what it holds on the branch the query runs on, and its reservations (which are
# branch-agnostic, so the same on every branch).
SERVICE = _expand(
    """
query Service($identifier: String!) {
  ServiceDedicatedInternet(service_identifier__value: $identifier) { edges { node { @SERVICE@ } } }
  ServiceReservation(service_identifier__value: $identifier) { edges { node { @RESERVATION@ } } }
}
"""
)

# Prefix sizes the product sells, in addresses: prefix pool room is counted per size.
PREFIX_SIZES = tuple(sorted({2 ** (32 - length) for length in policy.PREFIX_LENGTH.values()}))


SITE_FIELDS = """
    id name { value } shortname { value }
    devices { edges { node {
      name { value } role { value } index { value }
      interfaces(role__value: "customer", status__value: "free") {
        edges { node { __typename name { value } speed { value } } }
      }
    } } }
"""


def view(
    *, service: bool, site_variable: bool, held: bool, changes: bool = True, claims: bool = False
) -> str:
    """The read of a step, as one document.

    ``service``: the service on the branch (``$identifier``) with its reservations, and the proposed
    changes of its branches (``$branches``: what their names start with). ``site_variable``: the site
    is ``$site`` (a service not recorded yet, or a site known already); otherwise it is read through
    the service's own location. Either way with its devices, the core switches' free customer ports,
    every pool and L2 domain. ``held`` (needs ``$site``): the port reservations at the site and, per
    pool that may apply, how many VLAN IDs and prefixes of each size are reserved
    (``$vlan_site``/``$vlan_global``, ``$prefix_site``/``$prefix_global``). ``claims``: only the port
    reservations, at the site ``$site`` when given (without it, at every site)."""
    variables: list[str] = []
    fields: list[str] = []
    if service:
        variables.append("$identifier: String!")
        located = "" if site_variable else f"location {{ node {{ {SITE_FIELDS} }} }}"
        fields += [
            "ServiceDedicatedInternet(service_identifier__value: $identifier) "
            f"{{ edges {{ node {{ @SERVICE@ {located} }} }} }}",
            "own: ServiceReservation(service_identifier__value: $identifier) { edges { node { @RESERVATION@ } } }",
        ]
    if service and changes:
        variables.append("$branches: String!")
        fields.append(
            "CoreProposedChange(source_branch__value: $branches, partial_match: true) "
            "{ edges { node { @CHANGE_READ@ } } }"
        )
    if site_variable or held:
        variables += ["$site: String!"]
    elif claims:
        variables += ["$site: String"]  # a null filter is ignored: every site's claims
    if site_variable:
        fields.append(f"LocationSite(shortname__value: $site) {{ edges {{ node {{ {SITE_FIELDS} }} }} }}")
    if service or site_variable:
        fields += [
            "CoreNumberPool { edges { node { name { value } start_range { value } end_range { value } } } }",
            "CoreIPPrefixPool { edges { node { name { value } resources { edges { node { prefix { value } } } } } } }",
            "IpamL2Domain { edges { node { name { value } } } }",
        ]
    if held:
        variables += [
            "$vlan_site: String!",
            "$vlan_global: String!",
            "$prefix_site: String!",
            "$prefix_global: String!",
        ]
        fields += [
            'vlans_site: ServiceReservation(kind__value: "vlan", pool__value: $vlan_site) { count }',
            'vlans_global: ServiceReservation(kind__value: "vlan", pool__value: $vlan_global) { count }',
        ]
        for where in ("site", "global"):
            fields += [
                f"prefixes_{where}_{size}: ServiceReservation("
                f'kind__value: "prefix", pool__value: $prefix_{where}, size__value: {size}) {{ count }}'
                for size in PREFIX_SIZES
            ]
    if held or claims:
        fields.append(
            'held: ServiceReservation(site__value: $site, kind__value: "port") { edges { node { '
            "resource { value } device_index { value } service_identifier { value } site { value } } } }"
        )
    body = "\n  ".join(fields)
    return _expand(f"query View({', '.join(variables)}) {{\n  {body}\n}}")


def generator_query() -> str:
    """The Dedicated Internet generator's query (``generators/dedicated_internet.gql``): the read of a
    step for the service Infrahub runs the generator for (``$service_identifier``, at ``$site``), with
    the port claims at its site, so that a run needs no other read. The pools' room is not counted:
    a pool with nothing left says so when asked."""
    text = view(service=True, site_variable=False, held=False, changes=False, claims=True)
    text = text.replace("query View(", "query DedicatedInternet(", 1).replace(
        "$identifier", "$service_identifier"
    )
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


# A null filter is ignored by Infrahub: one document for every combination of filters.
SERVICES = _expand(
    """
query Services($limit: Int!, $offset: Int!, $status: String, $site: String) {
  ServiceDedicatedInternet(
    limit: $limit, offset: $offset, status__value: $status, location__shortname__value: $site
  ) { count edges { node { @SERVICE@ } } }
}
"""
)

SERVICE_COUNT = """
query ServiceCount($status: String, $site: String) {
  ServiceDedicatedInternet(status__value: $status, location__shortname__value: $site) { count }
}
"""

# Only the id back: a mutation's answer counts as a write of every kind it selects (site, VLAN,
# interfaces...), which service delivery may not do on main.
CREATE_SERVICE = """
mutation CreateService($data: ServiceDedicatedInternetCreateInput!) {
  ServiceDedicatedInternetCreate(data: $data) { ok object { id } }
}
"""

UPDATE_SERVICE = """
mutation UpdateService($data: ServiceDedicatedInternetUpdateInput!) {
  ServiceDedicatedInternetUpdate(data: $data) { ok }
}
"""

SITES = """
query Sites { LocationSite { edges { node { shortname { value } } } } }
"""

CUSTOMER_PORTS = """
query CustomerPorts($limit: Int!, $offset: Int!) {
  DcimInterfaceL2(role__value: "customer", limit: $limit, offset: $offset) {
    count
    edges { node { name { value } speed { value } device { node { name { value } role { value } location { node { shortname { value } } } } } } }
  }
}
"""

RESERVATIONS_OF_KIND = """
query Reservations($kind: String!, $limit: Int!, $offset: Int!) {
  ServiceReservation(kind__value: $kind, limit: $limit, offset: $offset) {
    count
    edges { node { resource { value } pool { value } size { value } } }
  }
}
"""

POOLS = """
query Pools {
  CoreNumberPool { edges { node { id name { value } start_range { value } end_range { value } } } }
  CoreIPPrefixPool { edges { node { id name { value } resources { edges { node { prefix { value } } } } } } }
}
"""

ALL_RESERVATIONS = """
query AllReservations($limit: Int!, $offset: Int!) {
  ServiceReservation(limit: $limit, offset: $offset) {
    count
    edges { node { service_identifier { value } resource { value } claimed_on { value } } }
  }
}
"""

RESERVATION = """
query Reservation($resource: String!) {
  ServiceReservation(resource__value: $resource) {
    edges { node { id service_identifier { value } claimed_on { value } released_on { value } } }
  }
}
"""

# One pool per request: see InfrahubInventory._used.
UTILIZATION = """
query Utilization($pool: String!) {
  InfrahubResourcePoolUtilization(pool_id: $pool) { utilization }
}
"""

PROPOSED_CHANGES = _expand(
    """
query ProposedChanges($branch: String!) {
  CoreProposedChange(source_branch__value: $branch) { edges { node { @CHANGE_READ@ } } }
}
"""
)

# A proposed change with what its merge leaves to finish on main (see backend.py): claims made or
# released on its branch, VLANs whose release was deferred, and whether the branch still exists.
CHANGE_AND_PENDING = _expand(
    """
query ChangeAndPending($branch: String!) {
  CoreProposedChange(source_branch__value: $branch) { edges { node { @CHANGE_READ@ } } }
  claimed: ServiceReservation(claimed_on__value: $branch) { edges { node { id } } }
  released: ServiceReservation(released_on__value: $branch) { edges { node { id } } }
  IpamVLAN(role__value: "customer", status__value: "deprecated") { edges { node { id } } }
  IpamPrefix(role__value: "customer", status__value: "deprecated") { edges { node { id } } }
  Branch(name: $branch) { name }
}
"""
)

# A change being merged: its state and, by its branch, what the merge will leave to finish (its
# validators are read by VALIDATIONS, which the merge waits on).
MERGE_STATE = _expand(
    """
query MergeState($id: ID!, $branch: String!) {
  CoreProposedChange(ids: [$id]) { edges { node { @CHANGE_READ@ } } }
  claimed: ServiceReservation(claimed_on__value: $branch) { edges { node { id } } }
  released: ServiceReservation(released_on__value: $branch) { edges { node { id } } }
  IpamVLAN(role__value: "customer", status__value: "deprecated") { edges { node { id } } }
  IpamPrefix(role__value: "customer", status__value: "deprecated") { edges { node { id } } }
  Branch(name: $branch) { name }
}
"""
)

MERGE_STATE_BY_ID = _expand(
    """
query MergeStateById($id: ID!) {
  CoreProposedChange(ids: [$id]) { edges { node { @CHANGE_READ@ } } }
}
"""
)

PROPOSED_CHANGE = _expand(
    """
query ProposedChange($id: ID!) {
  CoreProposedChange(ids: [$id]) { edges { node { @CHANGE_READ@ } } }
}
"""
)

CREATE_PROPOSED_CHANGE = _expand(
    """
mutation OpenChange($data: CoreProposedChangeCreateInput!) {
  CoreProposedChangeCreate(data: $data) { ok object { @CHANGE@ } }
}
"""
)

CLOSE_PROPOSED_CHANGE = _expand(
    """
mutation CloseChange($id: String!) {
  CoreProposedChangeUpdate(data: {id: $id, state: {value: "closed"}}) { ok object { @CHANGE@ } }
}
"""
)

UPDATE_PROPOSED_CHANGE = _expand(
    """
mutation UpdateChange($data: CoreProposedChangeUpdateInput!) {
  CoreProposedChangeUpdate(data: $data) { ok object { @CHANGE@ } }
}
"""
)

# The proposed change's pipeline again (after its description was refreshed with a fresh plan).
RUN_CHECKS = """
mutation RunChecks($id: String!) {
  CoreProposedChangeRunCheck(data: {id: $id, check_type: ALL}) { ok }
}
"""

# Where the proposed change's pipeline stands: every validator with its checks, the checks the
# registered repositories declare, and when the change's plan was last recorded (its re-opening).
VALIDATIONS = """
query Validations($id: ID!) {
  CoreProposedChange(ids: [$id]) {
    edges {
      node {
        state { value }
        source_branch { value }
        description { updated_at }
        validations {
          edges {
            node {
              __typename
              display_label
              state { value }
              conclusion { value }
              started_at { value }
              ... on CoreUserValidator { check_definition { node { id } } }
              checks { edges { node { display_label conclusion { value } message { value } } } }
            }
          }
        }
      }
    }
  }
  CoreCheckDefinition { edges { node { id name { value } } } }
}
"""

# The state update, not CoreProposedChangeMerge: only this path checks merge_proposed_change.
MERGE_PROPOSED_CHANGE = """
mutation MergeChange($id: String!) {
  CoreProposedChangeUpdate(data: {id: $id, state: {value: "merged"}}) { ok }
}
"""

DELETE_BRANCH = """
mutation DeleteBranch($name: String!) {
  BranchDelete(wait_until_completion: true, data: {name: $name}) { ok }
}
"""

BRANCH = """
query Branch($name: String!) {
  Branch(name: $name) { name }
}
"""
