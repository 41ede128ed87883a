// The system configuration (spec 06 ConfigService): the current values, an edit form
// checked against the spec's ranges before it is sent (and again by the server), the
// versions from the audit log, backups saved as files and restored with a confirmation.
import { confirmDialog, field, h, statusLine, table } from "../dom";
import { authed, clients, describe } from "../rpc";
import { AuditAction, AuditResource } from "../gen/lucid/admin/v1/audit";
import { ConfigBackup, type ConfigChange, type SystemConfig } from "../gen/lucid/admin/v1/config";
import { Struct } from "../gen/google/protobuf/struct";
import { when } from "./sessions";

type NumberKey = Exclude<
  keyof SystemConfig,
  "enableEmergencyControls" | "updateTime" | "updatedByUserId"
>;

/** The editable numbers: the field, its proto name, its label and the spec's range. */
export const RANGES: [NumberKey, string, string, number, number][] = (
  [
    ["maxSessionsPerUser", "max_sessions_per_user", "Sessions per user", 1, 100],
    ["sessionTimeoutSeconds", "session_timeout_seconds", "Session timeout in seconds", 300, 86400],
    ["nodeHealthCheckIntervalSeconds", "node_health_check_interval_seconds", "Node health check interval in seconds", 10, 300],
    ["blockchainAnchoringIntervalSeconds", "blockchain_anchoring_interval_seconds", "Anchoring interval in seconds", 300, 3600],
    ["payoutProcessingIntervalSeconds", "payout_processing_interval_seconds", "Payout interval in seconds", 3600, 86400],
    ["maxSessionSizeGb", "max_session_size_gb", "Largest session in GB", 1, 1000],
    ["auditLogRetentionDays", "audit_log_retention_days", "Audit log retention in days", 30, 3650],
  ] as [NumberKey, string, string, number, number][]
).map(([key, name, label, min, max]) => [key, name, `${label} (${min} to ${max})`, min, max]);

function changesText(changes: ConfigChange[]): string {
  if (!changes.length) return "nothing changed";
  return changes.map((c) => `${c.field} ${c.oldValue} → ${c.newValue}`).join("; ");
}

function download(name: string, text: string): void {
  const href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  const link = h("a", { href, download: name });
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10_000);
}

export function configPage(main: HTMLElement): void {
  const status = statusLine();
  const version = h("p", { "data-testid": "config-version" }, "Loading…");
  const inputs = new Map<NumberKey, HTMLInputElement>();
  for (const [key, name] of RANGES) {
    inputs.set(key, h("input", { name, type: "number", inputmode: "numeric", step: 1, required: true }));
  }
  const emergency = h("input", { name: "enable_emergency_controls", type: "checkbox" });
  const versions = h("div", { class: "table-holder" });
  const restoreFile = h("input", { name: "backup_file", type: "file", accept: "application/json,.json" });
  let current: SystemConfig | undefined;

  function show(config: SystemConfig | undefined): void {
    current = config;
    if (!config) return;
    for (const [key] of RANGES) (inputs.get(key) as HTMLInputElement).value = String(config[key]);
    emergency.checked = config.enableEmergencyControls;
    version.textContent = config.updatedByUserId
      ? `Last changed ${when(config.updateTime)} by ${config.updatedByUserId}.`
      : "The defaults: never changed.";
  }

  async function loadVersions(): Promise<void> {
    const reply = await clients.audit.queryAuditLogs(
      {
        action: AuditAction.UPDATE,
        userId: "",
        resource: AuditResource.CONFIG,
        resourceId: "",
        severity: 0,
        pageSize: 20,
        pageToken: "",
      },
      authed(),
    ).response;
    versions.replaceChildren(
      table(
        "Configuration versions (newest first)",
        ["Version", "Time", "By", "How", "Changes"],
        reply.entries.map((e) => {
          const details = e.details ? (Struct.toJson(e.details) as Record<string, unknown>) : {};
          const changes = (details.changes as { field: string; old: unknown; new: unknown }[] | undefined) ?? [];
          return [
            e.resourceId,
            when(e.eventTime),
            e.username || e.userId,
            String(details.how ?? ""),
            changes.length ? changes.map((c) => `${c.field} ${String(c.old)} → ${String(c.new)}`).join("; ") : "none",
          ];
        }),
      ),
    );
  }

  async function load(): Promise<void> {
    try {
      show((await clients.config.getConfig({}, authed()).response).config);
      await loadVersions();
    } catch (error) {
      status.say(`Configuration failed: ${describe(error)}`, true);
    }
  }

  async function save(event: Event): Promise<void> {
    event.preventDefault();
    if (!current) return;
    const changed: Partial<SystemConfig> = {};
    const paths: string[] = [];
    for (const [key, name, label, min, max] of RANGES) {
      const text = (inputs.get(key) as HTMLInputElement).value.trim();
      const value = Number(text);
      if (!/^\d+$/.test(text) || value < min || value > max) {
        status.say(`Not saved: ${label.split(" (")[0]} must be a whole number from ${min} to ${max}.`, true);
        (inputs.get(key) as HTMLInputElement).focus();
        return;
      }
      if (value !== current[key]) {
        changed[key] = value;
        paths.push(name);
      }
    }
    if (emergency.checked !== current.enableEmergencyControls) {
      changed.enableEmergencyControls = emergency.checked;
      paths.push("enable_emergency_controls");
    }
    if (!paths.length) {
      status.say("Nothing to save: no value changed.");
      return;
    }
    try {
      const reply = await clients.config.updateConfig(
        { config: { ...current, ...changed }, updateMask: { paths } },
        authed(),
      ).response;
      show(reply.config);
      status.say(`Saved: ${changesText(reply.changes)}.`);
      await loadVersions();
    } catch (error) {
      status.say(`Not saved: ${describe(error)}`, true);
    }
  }

  async function backup(): Promise<void> {
    try {
      const reply = await clients.config.backupConfig({}, authed()).response;
      if (!reply.backup) throw new Error("the reply holds no backup");
      const text = ConfigBackup.toJsonString(reply.backup, { prettySpaces: 2 });
      download(`lucid-config-${reply.backup.backupId}.json`, text);
      status.say(`Backup ${reply.backup.backupId} saved (SHA-256 ${reply.backup.sha256}).`);
    } catch (error) {
      status.say(`Backup failed: ${describe(error)}`, true);
    }
  }

  async function restore(): Promise<void> {
    const file = restoreFile.files?.[0];
    if (!file) {
      status.say("Choose a backup file first.", true);
      restoreFile.focus();
      return;
    }
    let parsed: ConfigBackup;
    try {
      parsed = ConfigBackup.fromJsonString(await file.text());
    } catch (error) {
      status.say(`Not restored: the file is not a configuration backup (${describe(error)}).`, true);
      return;
    }
    const answer = await confirmDialog(
      "Restore the configuration",
      `Every value is replaced by the backup ${parsed.backupId || file.name}.`,
      { action: "Restore" },
    );
    if (!answer) return;
    try {
      const reply = await clients.config.restoreConfig(
        { backup: parsed, confirm: true, reason: answer.reason },
        authed(),
      ).response;
      show(reply.config);
      status.say(`Restored: ${changesText(reply.changes)}.`);
      await loadVersions();
    } catch (error) {
      status.say(`Not restored: ${describe(error)}`, true);
    }
  }

  const form = h(
    "form",
    { "aria-label": "System configuration", novalidate: true, onsubmit: (e: Event) => void save(e) },
    ...RANGES.map(([key, , label]) => field(label, inputs.get(key) as HTMLInputElement)),
    field("Emergency controls enabled", emergency),
    h("button", { type: "submit" }, "Save the configuration"),
  );
  main.replaceChildren(
    h("h1", {}, "Configuration"),
    version,
    form,
    h(
      "section",
      { "aria-labelledby": "backup-title" },
      h("h2", { id: "backup-title" }, "Backup and restore"),
      h("button", { type: "button", onclick: () => void backup() }, "Download a backup"),
      field("Backup file to restore", restoreFile),
      h("button", { type: "button", class: "danger", onclick: () => void restore() }, "Restore from the file"),
    ),
    h("section", { "aria-labelledby": "versions-title" }, h("h2", { id: "versions-title" }, "Versions"), versions),
    status,
  );
  void load();
}
