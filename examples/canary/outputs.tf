output "service_vip" {
  description = "The VIP clients of the web service send to"
  value       = weft_service.web.vip
}

output "web_spiffe_id" {
  description = "The SPIFFE ID the web workloads' SVIDs carry"
  value       = weft_identity.web.spiffe_id
}

output "trust_bundle_pem" {
  description = "The tenant's X.509 trust bundle"
  value       = data.weft_bundle.this.pem
}
