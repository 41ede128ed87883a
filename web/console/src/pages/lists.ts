// The listing pages: nodes and pools with their work credits (nodes cluster, spec 05 §4),
// payouts (with their TRON transaction ids) and users with the console roles.
import { h, statusLine, table } from "../dom";
import { authed, clients, describe } from "../rpc";
import { AdminNodeState } from "../gen/lucid/admin/v1/admin";
import { PayoutCurrency, PayoutState } from "../gen/lucid/admin/v1/operations";
import { AccountStatus } from "../gen/lucid/auth/v1/auth";
import { Role } from "../gen/lucid/common/v1/access";
import { PoolState } from "../gen/lucid/nodes/v1/pool";
import type { GetWorkCreditsResponse } from "../gen/lucid/nodes/v1/poot";
import { when } from "./sessions";

function lower(names: Record<number, string>, value: number): string {
  return (names[value] ?? "unspecified").toLowerCase().replace(/_/g, " ");
}

function page(main: HTMLElement, title: string, ...parts: Node[]): ReturnType<typeof statusLine> {
  const status = statusLine();
  main.replaceChildren(h("h1", {}, title), ...parts, status);
  return status;
}

/** A node's or a pool's work credits over the last 7 days, its live score and rank. */
async function credits(nodeId: string, poolId: string): Promise<GetWorkCreditsResponse | string> {
  try {
    return await clients.credits.getWorkCredits({ nodeId, poolId }, authed()).response;
  } catch (error) {
    return `unavailable: ${describe(error)}`;
  }
}

function creditCells(report: GetWorkCreditsResponse | string, live: boolean): (string | number)[] {
  if (typeof report === "string") return live ? [report, "–", "–"] : [report, "–"];
  const rank = report.rank ? `#${report.rank}` : "unranked";
  const cells: (string | number)[] = [report.credits.toFixed(2), rank];
  if (live) cells.splice(1, 0, report.liveScore.toFixed(2));
  return cells;
}

export function nodesPage(main: HTMLElement): void {
  const nodes = h("div", { class: "table-holder" });
  const pools = h("div", { class: "table-holder" });
  const status = page(
    main,
    "Nodes and pools",
    h("p", {}, "Work credits are the sum of value × weight of the proofs of the last 7 days."),
    nodes,
    pools,
  );
  void clients.nodes
    .listNodes({ state: 0, pageSize: 100, pageToken: "" }, authed())
    .response.then(async (reply) => {
      const reports = await Promise.all(reply.nodes.map((n) => credits(n.nodeId, "")));
      nodes.replaceChildren(
        table(
          `Nodes (${reply.totalSize})`,
          [
            "Node",
            "Host",
            "Pool",
            "Type",
            "State",
            "Active sessions",
            "CPU %",
            "Last heartbeat",
            "Work credits",
            "Live score",
            "Rank",
          ],
          reply.nodes.map((n, i) => [
            n.nodeId,
            n.hostname,
            n.poolId || "–",
            n.nodeType || "–",
            lower(AdminNodeState, n.state),
            n.activeSessions,
            n.cpuPercent.toFixed(1),
            when(n.lastHeartbeatTime),
            ...creditCells(reports[i], true),
          ]),
        ),
      );
    })
    .catch((error: unknown) => status.say(`Nodes failed: ${describe(error)}`, true));
  void clients.pools
    .listPools({ state: 0, pageSize: 100, pageToken: "" }, authed())
    .response.then(async (reply) => {
      const reports = await Promise.all(reply.pools.map((p) => credits("", p.poolId)));
      pools.replaceChildren(
        table(
          `Pools (${reply.totalSize})`,
          ["Pool", "Name", "State", "Members", "Active members", "Most members", "Work credits", "Rank"],
          reply.pools.map((p, i) => [
            p.poolId,
            p.name,
            lower(PoolState, p.state),
            p.nodeCount,
            p.activeNodeCount,
            p.maxNodes,
            ...creditCells(reports[i], false),
          ]),
        ),
      );
    })
    .catch((error: unknown) => status.say(`Pools failed: ${describe(error)}`, true));
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
