# An HTTP canary between two services on Weft: requests to "web" go 90% to
# the service web-v1 and 10% to web-v2 (the Gateway API's form), each try
# bounded to 500ms and retried twice on a failed connection or a 502-504.
# Connections to web go through each node's HTTP proxy; web-v1 and web-v2
# keep the kernel's socket load balancing for callers that name them.
# Move traffic with: terraform apply -var v1_weight=50 -var v2_weight=50
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
  display_name = "HTTP canary example"
}

# Both tracks run as one identity; their version label tells them apart.
resource "weft_identity" "web" {
  for_each  = toset(["v1", "v2"])
  tenant    = weft_tenant.this.name
  name      = "web-${each.key}"
  path      = "/ns/prod/sa/web-${each.key}"
  selectors = { app = "web", version = each.key }
}

# The service callers use: its own backends are every web workload, taken
# by requests no rule of the route matches (here: none, the rule matches all).
resource "weft_service" "web" {
  tenant   = weft_tenant.this.name
  name     = "web"
  ports    = [{ port = 80, protocol = "tcp", target_port = 8080 }]
  backends = { selector = { labels = { app = "web" } } }
}

# One service per track, which the route splits between.
resource "weft_service" "track" {
  for_each = weft_identity.web
  tenant   = weft_tenant.this.name
  name     = "web-${each.key}"
  ports    = [{ port = 80, protocol = "tcp", target_port = 8080 }]
  backends = { selector = { identity = each.value.name } }
}

resource "weft_http_route" "web" {
  tenant      = weft_tenant.this.name
  name        = "web-canary"
  parent_refs = [{ name = weft_service.web.name, port = 80 }]
  rules = [{
    backend_refs = [
      { kind = "Service", name = weft_service.track["v1"].name, port = 80, weight = var.v1_weight },
      { kind = "Service", name = weft_service.track["v2"].name, port = 80, weight = var.v2_weight },
    ]
    timeouts = { request = "2s", backend_request = "500ms" }
    retry    = { attempts = 2, on = ["connect-failure", "gateway-error"] }
  }]
}

# The caller. Its workloads are the only ones that may use web, and only
# to read under /api (L7 authorization, decided per request by the proxy of
# the caller's node): once a policy governs web's backends, anything else
# is refused with 403 problem+json.
resource "weft_identity" "client" {
  tenant    = weft_tenant.this.name
  name      = "client"
  path      = "/ns/prod/sa/client"
  selectors = { app = "client" }
}

resource "weft_policy" "web_l7" {
  tenant  = weft_tenant.this.name
  name    = "web-l7"
  subject = { labels = { app = "web" } }
  ingress = [{
    peers  = [{ identity = weft_identity.client.name }]
    ports  = [{ port = 8080, protocol = "tcp" }]
    action = "allow"
    http   = { methods = ["GET", "HEAD"], path_prefixes = ["/api"] }
  }]
}

# Circuit breaking, outlier ejection and a per-caller rate limit for web,
# kept by each caller node's proxy.
resource "weft_traffic_policy" "web" {
  tenant          = weft_tenant.this.name
  name            = "web"
  target_ref      = { name = weft_service.web.name }
  connection_pool = { max_connections = 64, max_pending_requests = 128 }
  outlier_detection = {
    consecutive5xx       = 5
    base_ejection_time   = "30s"
    max_ejection_percent = 50
  }
  rate_limit = { requests_per_second = 100, burst = 200 }
}
