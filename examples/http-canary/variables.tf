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
  description = "The tenant to create: a DNS label"
  type        = string
  default     = "http-canary-demo"
}

variable "v1_weight" {
  description = "web-v1's share of web's requests (0..1000, relative to v2_weight)"
  type        = number
  default     = 90
}

variable "v2_weight" {
  description = "web-v2's share of web's requests (0..1000, relative to v1_weight)"
  type        = number
  default     = 10
}
