// The listing pages: nodes (with their pools), payouts (with their TRON transaction ids)
// and users with the console roles.
import { h, statusLine, table } from "../dom";
import { authed, clients, describe } from "../rpc";
import { AdminNodeState } from "../gen/lucid/admin/v1/admin";
import { PayoutCurrency, PayoutState } from "../gen/lucid/admin/v1/operations";
import { AccountStatus } from "../gen/lucid/auth/v1/auth";
import { Role } from "../gen/lucid/common/v1/access";
import { when } from "./sessions";

function lower(names: Record<number, string>, value: number): string {
  return (names[value] ?? "unspecified").toLowerCase().replace(/_/g, " ");
}

function page(main: HTMLElement, title: string, ...parts: Node[]): ReturnType<typeof statusLine> {
  const status = statusLine();
  main.replaceChildren(h("h1", {}, title), ...parts, status);
  return status;
}

export function nodesPage(main: HTMLElement): void {
  const holder = h("div", { class: "table-holder" });
  const status = page(main, "Nodes and pools", holder);
  void clients.nodes
    .listNodes({ state: 0, pageSize: 100, pageToken: "" }, authed())
    .response.then((reply) => {
      holder.replaceChildren(
        table(
          `Nodes (${reply.totalSize})`,
          ["Node", "Host", "Pool", "Type", "State", "Active sessions", "CPU %", "Last heartbeat"],
          reply.nodes.map((n) => [
            n.nodeId,
            n.hostname,
            n.poolId || "–",
            n.nodeType || "–",
            lower(AdminNodeState, n.state),
            n.activeSessions,
            n.cpuPercent.toFixed(1),
            when(n.lastHeartbeatTime),
          ]),
        ),
      );
    })
    .catch((error: unknown) => status.say(`Listing failed: ${describe(error)}`, true));
}

export function payoutsPage(main: HTMLElement): void {
  const holder = h("div", { class: "table-holder" });
  const status = page(main, "Payouts", holder);
  void clients.payouts
    .listPayouts({ state: 0, userId: "", pageSize: 100, pageToken: "" }, authed())
    .response.then((reply) => {
      holder.replaceChildren(
        table(
          `Payouts (${reply.totalSize})`,
          ["Payout", "Node", "Recipient", "Amount", "State", "TRON transaction", "Confirmations", "Created"],
          reply.payouts.map((p) => [
            p.payoutId,
            p.nodeId || "–",
            p.recipientAddress,
            `${(p.amountMicros / 1e6).toFixed(6)} ${lower(PayoutCurrency, p.currency).toUpperCase()}`,
            lower(PayoutState, p.state),
            p.txHash ? h("code", {}, p.txHash) : "–",
            p.confirmations,
            when(p.createTime),
          ]),
        ),
      );
    })
    .catch((error: unknown) => status.say(`Listing failed: ${describe(error)}`, true));
}

export function usersPage(main: HTMLElement): void {
  const users = h("div", { class: "table-holder" });
  const roles = h("div", { class: "table-holder" });
  const status = page(main, "Users and roles", users, roles);
  void clients.auth
    .listUsers({ role: 0, kycStatus: 0, status: 0, pageSize: 100, pageToken: "" }, authed())
    .response.then((reply) => {
      users.replaceChildren(
        table(
          `Users (${reply.totalSize})`,
          ["User", "TRON address", "Role", "Status", "TOTP", "Last sign-in"],
          reply.users.map((u) => [
            u.userId,
            u.tronAddress,
            lower(Role, u.role),
            lower(AccountStatus, u.status),
            u.totpEnabled ? "enrolled" : "no",
            when(u.lastLoginTime),
          ]),
        ),
      );
    })
    .catch((error: unknown) => status.say(`Users failed: ${describe(error)}`, true));
  void clients.rbac
    .listRoles({ pageSize: 100, pageToken: "" }, authed())
    .response.then((reply) => {
      roles.replaceChildren(
        table(
          "Console roles",
          ["Role", "Description", "Permissions", "Users", "Built in"],
          reply.roles.map((r) => [r.name, r.description, r.permissions.length, r.userCount, r.isSystem ? "yes" : "no"]),
        ),
      );
    })
    .catch((error: unknown) => status.say(`Roles failed: ${describe(error)}`, true));
}
