output "route_etag" {
  description = "The route's version, as the API's ETag"
  value       = weft_http_route.web.etag
}
