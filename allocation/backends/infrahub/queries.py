"""The GraphQL documents the backend sends. Each one is a single round trip.

Reads fetch everything one call needs at once (a service with its whole implementation, a
site with the pools and L2 domains); writes that belong together go in one document as
aliased mutations, which Infrahub runs in order.
"""

from __future__ import annotations

SERVICE_KIND = "ServiceDedicatedInternet"
RESERVATION_KIND = "ServiceReservation"
RESERVATION_FIELDS = "id resource { value } kind { value } claimed_on { value } released_on { value }"

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

# Sites, devices, pools and L2 domains: the catalog, read once per inventory instance.
CATALOG = """
query Catalog {
  LocationSite {
    edges {
      node {
        id
        name { value }
        shortname { value }
        devices { edges { node { id name { value } role { value } index { value } } } }
      }
    }
  }
  CoreNumberPool { edges { node { id name { value } start_range { value } end_range { value } } } }
  CoreIPPrefixPool { edges { node { id name { value } resources { edges { node { id prefix { value } } } } } } }
  IpamL2Domain { edges { node { id name { value } } } }
}
"""

FREE_PORTS = """
query FreePorts($devices: [String], $site: String!) {
  DcimInterfaceL2(device__name__values: $devices, role__value: "customer", status__value: "free") {
    edges { node { id name { value } speed { value } device { node { name { value } } } } }
  }
  ServiceReservation(site__value: $site, kind__value: "port") { edges { node { resource { value } } } }
}
"""

SITE_RESERVATIONS = """
query SiteReservations($site: String!) {
  ServiceReservation(site__value: $site, kind__value: "port") { edges { node { device_index { value } } } }
}
"""

CUSTOMER_PORTS = """
query CustomerPorts($limit: Int!, $offset: Int!) {
  DcimInterfaceL2(role__value: "customer", limit: $limit, offset: $offset) {
    count
    edges { node { name { value } speed { value } device { node { name { value } role { value } } } } }
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

CREATE_RESERVATION = """
mutation Reserve($data: ServiceReservationCreateInput!) {
  ServiceReservationCreate(data: $data) { ok object { id } }
}
"""

CREATE_VLAN = """
mutation CreateVlan($data: IpamVLANCreateInput!) {
  IpamVLANCreate(data: $data) { ok object { id vlan_id { value } name { value } } }
}
"""

ALLOCATE_PREFIX = """
mutation AllocatePrefix($data: IPPrefixPoolGetResourceInput!) {
  InfrahubIPPrefixPoolGetResource(data: $data) { ok node { id kind identifier display_label } }
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

CREATE_BRANCH = """
mutation CreateBranch($name: String!) {
  BranchCreate(wait_until_completion: true, data: {name: $name, sync_with_git: false}) { ok }
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

# What a merged branch leaves to finish on main: claims made or released there, VLANs whose
# release was deferred (see the module docstring of backend.py).
PENDING_AFTER_MERGE = """
query Pending($branch: String!) {
  claimed: ServiceReservation(claimed_on__value: $branch) { edges { node { id } } }
  released: ServiceReservation(released_on__value: $branch) { edges { node { id } } }
  IpamVLAN(role__value: "customer", status__value: "deprecated") { edges { node { id } } }
}
"""
