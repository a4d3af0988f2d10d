// The server's gRPC API over grpc-web, on the page's own origin, through the generated
// client of clients/typescript. The API key (when the server asks for one) is kept for the
// tab's session only (sessionStorage) and sent as `authorization: Bearer <key>`.

import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ApprovalService } from "../../typescript/src/gen/claude_swarm/v1/approvals_pb.js";
import { CallerService } from "../../typescript/src/gen/claude_swarm/v1/caller_pb.js";
import {
  EventService,
  InstanceService,
  SwarmService,
  TaskService,
  WorkflowService,
} from "../../typescript/src/gen/claude_swarm/v1/swarm_pb.js";

const KEY = "claude-swarm.key";

export const key = {
  get: (): string | null => sessionStorage.getItem(KEY),
  set: (value: string) => sessionStorage.setItem(KEY, value),
  forget: () => sessionStorage.removeItem(KEY),
};

const withKey: Interceptor = (next) => (request) => {
  const value = key.get();
  if (value) request.header.set("authorization", `Bearer ${value}`);
  return next(request);
};

const transport = createGrpcWebTransport({
  baseUrl: location.origin,
  useBinaryFormat: true,
  interceptors: [withKey],
});

export const api = {
  swarm: createClient(SwarmService, transport),
  tasks: createClient(TaskService, transport),
  instances: createClient(InstanceService, transport),
  workflows: createClient(WorkflowService, transport),
  events: createClient(EventService, transport),
  approvals: createClient(ApprovalService, transport),
  caller: createClient(CallerService, transport),
};

/** What a key may do; each role may also do what the ones before it may. */
export type Role = "read" | "operate" | "admin";
const ROLES: Role[] = ["read", "operate", "admin"];

let role: Role = "read";
export const caller = {
  set: (r: string) => {
    role = ROLES.includes(r as Role) ? (r as Role) : "read";
  },
  can: (needed: Role) => ROLES.indexOf(role) >= ROLES.indexOf(needed),
};

/** The server's message of a failed call (it names the field at fault). */
export function message(error: unknown): string {
  const e = ConnectError.from(error);
  return e.rawMessage || Code[e.code];
}

export function isUnauthenticated(error: unknown): boolean {
  return ConnectError.from(error).code === Code.Unauthenticated;
}

export { Code, ConnectError };
