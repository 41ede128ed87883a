// The audit log: entries with filters and paging, the hash chain verified on request
// (VerifyAuditChain names the first entry that does not fit), and exports (JSON, CSV)
// saved as files.
import { field, h, select, statusLine, table } from "../dom";
import { authed, clients, describe } from "../rpc";
import { AuditAction, AuditResult, ExportFormat } from "../gen/lucid/admin/v1/audit";
import { when } from "./sessions";

const PAGE_SIZE = 20;

function label(value: number, names: Record<number, string>): string {
  return (names[value] ?? "unspecified").toLowerCase().replace(/_/g, " ");
}

export function auditPage(main: HTMLElement): void {
  const status = statusLine();
  const verdict = h("p", { "data-testid": "chain-verdict", "aria-live": "polite" }, "Not verified yet.");
  const action = select("action", [
    ["0", "Any action"],
    ...Object.entries(AuditAction)
      .filter(([, v]) => typeof v === "number" && v !== 0)
      .map(([k, v]) => [String(v), k.toLowerCase().replace(/_/g, " ")] as [string, string]),
  ]);
  const holder = h("div", { class: "table-holder" });
  const previous = h("button", { type: "button", disabled: true }, "Previous page");
  const next = h("button", { type: "button", disabled: true }, "Next page");
  const pageInfo = h("span", { "aria-live": "polite" });
  const tokens: string[] = [""];

  async function load(): Promise<void> {
    try {
      const reply = await clients.audit.queryAuditLogs(
        {
          action: Number(action.value),
          userId: "",
          resource: 0,
          resourceId: "",
          severity: 0,
          pageSize: PAGE_SIZE,
          pageToken: tokens[tokens.length - 1],
        },
        authed(),
      ).response;
      holder.replaceChildren(
        table(
          "Audit entries (newest first)",
          ["Time", "User", "Action", "Resource", "Result", "Entry hash"],
          reply.entries.map((e) => [
            when(e.eventTime),
            e.username || e.userId || "system",
            label(e.action, AuditAction),
            e.resourceId,
            label(e.result, AuditResult),
            h("code", { title: e.entryHash }, e.entryHash.slice(0, 16)),
          ]),
        ),
      );
      pageInfo.textContent = `Page ${tokens.length} · ${reply.totalSize} entries`;
      previous.disabled = tokens.length === 1;
      next.disabled = !reply.nextPageToken;
      next.dataset.token = reply.nextPageToken;
    } catch (error) {
      status.say(`Query failed: ${describe(error)}`, true);
    }
  }

  async function verify(): Promise<void> {
    verdict.textContent = "Verifying…";
    try {
      const reply = await clients.audit.verifyAuditChain({}, authed()).response;
      verdict.textContent = reply.valid
        ? `Chain intact: ${reply.checkedCount} entries checked.`
        : `Chain broken at entry ${reply.firstInvalidEntryId}: ${reply.message}`;
      verdict.classList.toggle("error", !reply.valid);
    } catch (error) {
      verdict.textContent = `Verification failed: ${describe(error)}`;
    }
  }

  async function exportAs(format: ExportFormat): Promise<void> {
    try {
      const reply = await clients.audit.exportAuditLogs(
        { format, action: Number(action.value), userId: "", resource: 0, resourceId: "", severity: 0 },
        authed(),
      ).response;
      const blob = new Blob([reply.content as Uint8Array<ArrayBuffer>], { type: reply.contentType });
      const link = h("a", { href: URL.createObjectURL(blob), download: reply.fileName });
      document.body.appendChild(link);
      link.click();
      link.remove();
      status.say(`Exported ${reply.entryCount} entries as ${reply.fileName} (SHA-256 ${reply.sha256}).`);
    } catch (error) {
      status.say(`Export failed: ${describe(error)}`, true);
    }
  }

  previous.addEventListener("click", () => {
    tokens.pop();
    void load();
  });
  next.addEventListener("click", () => {
    tokens.push(next.dataset.token ?? "");
    void load();
  });
  main.replaceChildren(
    h("h1", {}, "Audit log"),
    h(
      "section",
      { "aria-labelledby": "chain-heading" },
      h("h2", { id: "chain-heading" }, "Hash chain"),
      h("button", { type: "button", onclick: () => void verify() }, "Verify the chain"),
      verdict,
    ),
    h(
      "form",
      {
        class: "filters",
        "aria-label": "Audit filters",
        onsubmit: (event: Event) => {
          event.preventDefault();
          tokens.splice(1);
          void load();
        },
      },
      field("Action", action),
      h("button", { type: "submit" }, "Apply filters"),
      h("button", { type: "button", onclick: () => void exportAs(ExportFormat.JSON) }, "Export JSON"),
      h("button", { type: "button", onclick: () => void exportAs(ExportFormat.CSV) }, "Export CSV"),
    ),
    holder,
    h("div", { class: "pager" }, previous, pageInfo, next),
    status,
  );
  void load();
}
