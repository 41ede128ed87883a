// The dashboard: the overview's numbers, kept live by StreamDashboard (metric updates
// every 2 s; a session or node change refreshes the overview at once), with charts of
// sessions, CPU and memory, and the latest events.
import { h, sparkline, statusLine } from "../dom";
import { authed, clients, describe } from "../rpc";
import { AdminSessionState, HealthStatus, SyncStatus } from "../gen/lucid/admin/v1/admin";
import {
  DashboardMetric,
  type StreamDashboardResponse,
  type SystemOverview,
} from "../gen/lucid/admin/v1/dashboard";

const KEEP = 60;
const STATES: Record<number, string> = {
  [AdminSessionState.ACTIVE]: "active",
  [AdminSessionState.IDLE]: "idle",
  [AdminSessionState.TERMINATED]: "terminated",
};

function stat(label: string, id: string): [HTMLElement, HTMLElement] {
  const value = h("dd", { "data-testid": id }, "–");
  return [h("div", { class: "stat" }, h("dt", {}, label), value), value];
}

export function dashboardPage(main: HTMLElement): () => void {
  const status = statusLine();
  const numbers = {
    total: stat("Sessions", "sessions-total"),
    active: stat("Active sessions", "sessions-active"),
    idle: stat("Idle sessions", "sessions-idle"),
    nodes: stat("Nodes online", "nodes-online"),
    height: stat("Chain height", "chain-height"),
    anchoring: stat("Sessions waiting for anchoring", "anchoring-pending"),
    health: stat("System status", "system-status"),
  };
  const series = { sessions: [] as number[], cpu: [] as number[], memory: [] as number[] };
  const charts = h("div", { class: "charts" });
  const events = h("ol", { class: "events", "aria-label": "Latest events" });
  const live = h("p", { class: "live", "data-testid": "stream-state" }, "connecting…");

  function drawCharts(): void {
    charts.replaceChildren(
      h("figure", {}, sparkline("Sessions", series.sessions), h("figcaption", {}, "Sessions")),
      h("figure", {}, sparkline("CPU percent", series.cpu, 100), h("figcaption", {}, "CPU %")),
      h("figure", {}, sparkline("Memory percent", series.memory, 100), h("figcaption", {}, "Memory %")),
    );
  }

  function push(values: number[], value: number): void {
    values.push(value);
    if (values.length > KEEP) values.shift();
  }

  function show(overview: SystemOverview): void {
    const sessions = overview.activeSessions;
    numbers.total[1].textContent = String(sessions?.total ?? 0);
    numbers.active[1].textContent = String(sessions?.active ?? 0);
    numbers.idle[1].textContent = String(sessions?.idle ?? 0);
    const nodes = overview.nodeStatus;
    numbers.nodes[1].textContent = `${nodes?.onlineNodes ?? 0} of ${nodes?.totalNodes ?? 0}`;
    const chain = overview.blockchainStatus;
    const sync = chain?.syncStatus ? ` (${SyncStatus[chain.syncStatus].toLowerCase()})` : "";
    numbers.height[1].textContent = `${chain?.localHeight ?? 0}${sync}`;
    numbers.anchoring[1].textContent = String(chain?.pendingAnchorings ?? 0);
    numbers.health[1].textContent = HealthStatus[overview.systemStatus?.status ?? 0].toLowerCase();
  }

  async function refresh(): Promise<void> {
    try {
      const reply = await clients.dashboard.getOverview({}, authed()).response;
      if (reply.overview) show(reply.overview);
    } catch (error) {
      status.say(`Overview failed: ${describe(error)}`, true);
    }
  }

  function note(event: StreamDashboardResponse): void {
    let text = "";
    const data = event.data;
    if (data.oneofKind === "sessionChange") {
      const change = data.sessionChange;
      text = `Session ${change.sessionId} ${change.kind}: ${STATES[change.state] ?? "unknown"}`;
    } else if (data.oneofKind === "nodeStatusChange") {
      text = `Node ${data.nodeStatusChange.nodeId} changed state`;
    } else if (data.oneofKind === "systemAlert") {
      text = `Alert: ${data.systemAlert.component}: ${data.systemAlert.message}`;
    } else {
      return;
    }
    events.prepend(h("li", {}, `${new Date().toLocaleTimeString()} ${text}`));
    while (events.children.length > 20) events.lastElementChild?.remove();
  }

  const abort = new AbortController();
  async function watch(): Promise<void> {
    while (!abort.signal.aborted) {
      try {
        const call = clients.dashboard.streamDashboard({ eventTypes: [], intervalSeconds: 2 }, authed(abort.signal));
        for await (const event of call.responses) {
          const data = event.data;
          if (data.oneofKind === "connectionEstablished") live.textContent = "live";
          if (data.oneofKind === "metricUpdate") {
            const update = data.metricUpdate;
            const sessions = update.sessions;
            if (sessions) {
              numbers.total[1].textContent = String(sessions.total);
              numbers.active[1].textContent = String(sessions.active);
              numbers.idle[1].textContent = String(sessions.idle);
              push(series.sessions, sessions.total);
            }
            push(series.cpu, update.resourceUsage?.cpuPercent ?? 0);
            push(series.memory, update.resourceUsage?.memoryPercent ?? 0);
            drawCharts();
          } else if (data.oneofKind === "sessionChange" || data.oneofKind === "nodeStatusChange") {
            note(event);
            void refresh();
          } else if (data.oneofKind === "blockchainUpdate") {
            numbers.height[1].textContent = String(data.blockchainUpdate.localHeight);
          } else {
            note(event);
          }
        }
      } catch (error) {
        if (abort.signal.aborted) return;
        live.textContent = `reconnecting (${describe(error)})`;
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

  async function history(): Promise<void> {
    try {
      const reply = await clients.dashboard.getMetrics({ metric: DashboardMetric.SESSIONS, timeframe: 0 }, authed())
        .response;
      series.sessions.unshift(...reply.points.slice(-KEEP).map((p) => p.value));
      drawCharts();
    } catch (error) {
      status.say(`History failed: ${describe(error)}`, true);
    }
  }

  main.replaceChildren(
    h("h1", {}, "Dashboard"),
    live,
    h("dl", { class: "stats" }, ...Object.values(numbers).map(([box]) => box)),
    h("section", { "aria-labelledby": "charts-heading" }, h("h2", { id: "charts-heading" }, "Live charts"), charts),
    h("section", { "aria-labelledby": "events-heading" }, h("h2", { id: "events-heading" }, "Latest events"), events),
    status,
  );
  drawCharts();
  void refresh().then(history);
  void watch();
  return () => abort.abort();
}
