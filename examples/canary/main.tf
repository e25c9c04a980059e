# A canary release on Weft: the "web" service sends 90% of its traffic to the
# stable backend and 10% to the canary; a policy lets only "frontend" call it.
# Move traffic with: terraform apply -var stable_weight=50 -var canary_weight=50
# See ../README.md for how to point Terraform at the provider.

terraform {
  required_version = ">= 1.5"
  required_providers {
    weft = {
      source = "weft/weft"
    }
  }
}

provider "weft" {
  # Left null, these come from WEFT_ENDPOINT and WEFT_TOKEN.
  endpoint = var.endpoint
  token    = var.token
}

# Creating a tenant takes the operator token.
resource "weft_tenant" "this" {
  name         = var.tenant
  display_name = "Canary example"
}

# Who calls the service.
resource "weft_identity" "frontend" {
  tenant    = weft_tenant.this.name
  name      = "frontend"
  path      = "/ns/prod/sa/frontend"
  selectors = { app = "frontend" }
}

# Who serves it: the stable and the canary track run as the same identity.
resource "weft_identity" "web" {
  tenant    = weft_tenant.this.name
  name      = "web"
  path      = "/ns/prod/sa/web"
  selectors = { app = "web" }
}

# Workloads live on a registered node (a node agent registers itself with a
# join token). With var.node unset there are no workloads, and the service
# sends straight to the two addresses instead.
resource "weft_workload" "web" {
  for_each = var.node == null ? {} : local.addresses

  tenant    = weft_tenant.this.name
  name      = "web-${each.key}"
  identity  = weft_identity.web.name
  node      = var.node
  addresses = [each.value]
}

locals {
  addresses = { stable = var.stable_address, canary = var.canary_address }
  weights   = { stable = var.stable_weight, canary = var.canary_weight }
}

resource "weft_service" "web" {
  tenant = weft_tenant.this.name
  name   = "web"
  # No vip: the API allocates one from WEFT_SERVICE_CIDR (see the output).

  ports = [
    { port = 80, protocol = "tcp", target_port = 8080 },
  ]

  backends = {
    explicit = [
      for track in ["stable", "canary"] : {
        workload = var.node == null ? null : weft_workload.web[track].name
        address  = var.node == null ? local.addresses[track] : null
        weight   = local.weights[track]
      }
    ]
  }

  load_balancing = "maglev"
}

resource "weft_policy" "web" {
  tenant  = weft_tenant.this.name
  name    = "web-ingress"
  subject = { identity = weft_identity.web.name }

  # Present, so what no rule allows is dropped; deny wins over allow.
  ingress = [
    {
      peers  = [{ identity = weft_identity.frontend.name }]
      ports  = [{ port = 8080, protocol = "tcp" }]
      action = "allow"
    },
    {
      peers  = [{ cidr = "192.0.2.0/24" }]
      action = "deny"
    },
  ]
}

# The tenant's trust bundle, for workloads outside the mesh that verify its SVIDs.
data "weft_bundle" "this" {
  tenant     = weft_tenant.this.name
  depends_on = [weft_tenant.this]
}
