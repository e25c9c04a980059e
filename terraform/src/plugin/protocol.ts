// The .proto files under terraform/proto, loaded with @grpc/proto-loader.
// Messages are plain objects with the proto's own field names (snake_case),
// int64 as JavaScript numbers, enums as their names, bytes as Buffers, and
// absent fields filled with their defaults (null for messages).
import { type GrpcObject, type ServiceClientConstructor, loadPackageDefinition } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";

const PROTO_DIR = fileURLToPath(new URL("../../proto/", import.meta.url));

export interface Protocol {
  provider: ServiceClientConstructor;
  controller: ServiceClientConstructor;
  stdio: ServiceClientConstructor;
  broker: ServiceClientConstructor;
  health: ServiceClientConstructor;
}

let loaded: Protocol | null = null;

/** Service constructors: `.service` is what a server adds, the constructor itself a client. */
export function loadProtocol(): Protocol {
  if (loaded) return loaded;
  const definition = loadSync(["tfplugin6.proto", "go-plugin.proto", "health.proto"], {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const root = loadPackageDefinition(definition);
  const pkg = (path: string): GrpcObject => path.split(".").reduce((o, k) => o[k] as GrpcObject, root);
  const svc = (path: string, name: string): ServiceClientConstructor => pkg(path)[name] as ServiceClientConstructor;
  loaded = {
    provider: svc("tfplugin6", "Provider"),
    controller: svc("plugin", "GRPCController"),
    stdio: svc("plugin", "GRPCStdio"),
    broker: svc("plugin", "GRPCBroker"),
    health: svc("grpc.health.v1", "Health"),
  };
  return loaded;
}
