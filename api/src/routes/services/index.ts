import { etagOf } from "../../mesh/preconditions.ts";
import { resourceRoutes } from "../tenant-resource.ts";
import { Service } from "./schemas.ts";
import { ServiceSpec } from "../../mesh/specs.ts";
import { serviceStore, type ServiceDbRow } from "../../mesh/services.ts";

/** The API representation of a stored row. */
const toService = (row: ServiceDbRow): Service => ({
  name: row.name,
  vip: row.vip,
  vipAllocated: row.vipAllocated,
  ports: row.ports as Service["ports"],
  backends: row.backends as Service["backends"],
  loadBalancing: row.loadBalancing,
  topology: { preferSameZone: row.preferSameZone },
  etag: etagOf(row.revision),
  createdAt: row.createdAt.toISOString(),
  updatedAt: row.updatedAt.toISOString(),
});

/** Services of a tenant: a VIP, its ports, and backends by selector or listed with weights. */
export default resourceRoutes({
  plural: "services",
  noun: "service",
  spec: ServiceSpec,
  resource: Service,
  store: serviceStore,
  show: toService,
  putNote:
    "A given VIP must lie inside WEFT_SERVICE_CIDR (not its network or broadcast address) and be no loopback, link-local, multicast, unspecified or broadcast address (422 body.vip), and be free on the whole platform (409 body.vip); without one, a VIP is allocated from WEFT_SERVICE_CIDR and kept across replaces. Selectors and explicit backends name identities and workloads of the same tenant only (422). A replace that would drop a tcp port an httpRoute names (or the last tcp port, for a route naming no port) is refused with 409, naming each route.",
  deleteConflict: "Refused with 409, naming each route or policy, while an httpRoute or a trafficPolicy names the service: change or delete it first.",
});
