// The console's connection to the edge: protobuf-ts clients over grpc-web (same origin,
// binary format), the signed-in token, and errors turned into readable text with their
// LUCID_ERR code (from the rich status in grpc-status-details-bin).
import { GrpcWebFetchTransport } from "@protobuf-ts/grpcweb-transport";
import { RpcError, type RpcOptions } from "@protobuf-ts/runtime-rpc";

import { AuthServiceClient } from "./gen/lucid/auth/v1/auth.client";
import { AdminAuthServiceClient, AdminRbacServiceClient } from "./gen/lucid/admin/v1/admin.client";
import { AuditServiceClient } from "./gen/lucid/admin/v1/audit.client";
import { DashboardServiceClient } from "./gen/lucid/admin/v1/dashboard.client";
import { EmergencyServiceClient } from "./gen/lucid/admin/v1/emergency.client";
import {
  AdminBlockchainServiceClient,
  AdminNodeServiceClient,
  AdminPayoutServiceClient,
  AdminSessionServiceClient,
} from "./gen/lucid/admin/v1/operations.client";
import { ConfigServiceClient } from "./gen/lucid/admin/v1/config.client";
import { ChunkServiceClient } from "./gen/lucid/sessions/v1/chunks.client";
import { PoolServiceClient } from "./gen/lucid/nodes/v1/pool.client";
import { WorkCreditServiceClient } from "./gen/lucid/nodes/v1/poot.client";
import { RdpSessionServiceClient } from "./gen/lucid/rdp/v1/session.client";
import { Status } from "./gen/google/rpc/status";
import { ErrorInfo } from "./gen/google/rpc/error_details";

const transport = new GrpcWebFetchTransport({ baseUrl: location.origin, format: "binary" });

export const clients = {
  auth: new AuthServiceClient(transport),
  me: new AdminAuthServiceClient(transport),
  rbac: new AdminRbacServiceClient(transport),
  audit: new AuditServiceClient(transport),
  dashboard: new DashboardServiceClient(transport),
  emergency: new EmergencyServiceClient(transport),
  sessions: new AdminSessionServiceClient(transport),
  nodes: new AdminNodeServiceClient(transport),
  chain: new AdminBlockchainServiceClient(transport),
  payouts: new AdminPayoutServiceClient(transport),
  config: new ConfigServiceClient(transport),
  chunks: new ChunkServiceClient(transport),
  pools: new PoolServiceClient(transport),
  credits: new WorkCreditServiceClient(transport),
  recordings: new RdpSessionServiceClient(transport),
};

const TOKEN_KEY = "lucid.console.token";

export function token(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

export function setToken(value: string): void {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Call options carrying the bearer token (and an abort signal, for streams). */
export function authed(abort?: AbortSignal): RpcOptions {
  return { meta: { authorization: `Bearer ${token()}` }, abort };
}

function base64Bytes(text: string): Uint8Array {
  const padded = text + "=".repeat((4 - (text.length % 4)) % 4);
  const raw = atob(padded.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

/** The LUCID_ERR reason of a failed call, if it carried the rich status. */
export function reasonOf(error: unknown): string {
  if (!(error instanceof RpcError)) return "";
  const details = error.meta["grpc-status-details-bin"];
  const text = Array.isArray(details) ? details[0] : details;
  if (!text) return "";
  try {
    const status = Status.fromBinary(base64Bytes(text));
    for (const detail of status.details) {
      if (detail.typeUrl.endsWith("/google.rpc.ErrorInfo")) {
        return ErrorInfo.fromBinary(detail.value).reason;
      }
    }
  } catch {
    return "";
  }
  return "";
}

/** A failed call as one line for the page: status, message, LUCID_ERR code. */
export function describe(error: unknown): string {
  if (error instanceof RpcError) {
    let reason = reasonOf(error);
    let message = decodeURIComponent(error.message || "");
    if (message.startsWith('{"error"')) {
      // the edge's own refusal (no cluster answered): its JSON envelope
      try {
        const envelope = JSON.parse(message) as { error: { code: string; message: string } };
        reason ||= envelope.error.code;
        message = envelope.error.message;
      } catch {
        // shown as it came
      }
    }
    return `${error.code}: ${message}${reason ? ` (${reason})` : ""}`;
  }
  return String(error instanceof Error ? error.message : error);
}

export function isCode(error: unknown, code: string): boolean {
  return error instanceof RpcError && error.code === code;
}
