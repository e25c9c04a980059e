variable "endpoint" {
  description = "The Weft API, e.g. http://127.0.0.1:8080; null reads WEFT_ENDPOINT"
  type        = string
  default     = null
}

variable "token" {
  description = "The operator token (the tenant is created here); null reads WEFT_TOKEN"
  type        = string
  default     = null
  sensitive   = true
}

variable "tenant" {
  description = "The tenant to create: a DNS label (not the README walk-through's acme, so both can run on one API)"
  type        = string
  default     = "canary-demo"
}

variable "node" {
  description = "A registered node to run the two web workloads on; null sends to the addresses without workloads"
  type        = string
  default     = null
}

variable "stable_address" {
  description = "The stable track's address (a workload address when var.node is set: inside the node's podCidr, unique across Weft)"
  type        = string
  default     = "10.0.0.10"
}

variable "canary_address" {
  description = "The canary track's address"
  type        = string
  default     = "10.0.0.11"
}

variable "stable_weight" {
  description = "Share of the traffic for the stable track"
  type        = number
  default     = 90
}

variable "canary_weight" {
  description = "Share of the traffic for the canary track"
  type        = number
  default     = 10
}
