// The emergency panel: the system mode, and the controls (disable/enable new sessions,
// stop all sessions, lockdown and lifting it), each behind a confirmation that asks for
// a reason and a TOTP code (the step-up these rpcs require).
import { confirmDialog, h, statusLine } from "../dom";
import { authed, clients, describe } from "../rpc";
import { SystemMode } from "../gen/lucid/admin/v1/emergency";
import { when } from "./sessions";

const MODES: Record<number, string> = {
  [SystemMode.NORMAL]: "Normal",
  [SystemMode.NEW_SESSIONS_DISABLED]: "New sessions disabled",
  [SystemMode.LOCKDOWN]: "Lockdown (only admins may call anything)",
};

interface Control {
  label: string;
  title: string;
  explanation: string;
  run(reason: string): Promise<unknown>;
}

export function emergencyPage(main: HTMLElement): void {
  const status = statusLine();
  const mode = h("dd", { "data-testid": "system-mode" }, "–");
  const details = h("dd", {}, "–");
  const e = clients.emergency;

  async function load(): Promise<void> {
    try {
      const reply = await e.getSystemMode({}, authed()).response;
      const s = reply.status;
      mode.textContent = MODES[s?.mode ?? 0] ?? "Unknown";
      details.textContent = s?.reason
        ? `${s.reason} (since ${when(s.sinceTime)}${s.autoRevertTime?.seconds ? `, reverts ${when(s.autoRevertTime)}` : ""})`
        : "–";
    } catch (error) {
      status.say(`Mode failed: ${describe(error)}`, true);
    }
  }

  const controls: Control[] = [
    {
      label: "Disable new sessions",
      title: "Disable new sessions",
      explanation: "The sessions and remote-desktop clusters will refuse every new session until enabled again.",
      run: (reason) => e.disableNewSessions({ reason, autoRevertSeconds: 0 }, authed()).response,
    },
    {
      label: "Enable new sessions",
      title: "Enable new sessions",
      explanation: "New sessions will be accepted again.",
      run: (reason) => e.enableNewSessions({ reason }, authed()).response,
    },
    {
      label: "Stop all sessions",
      title: "Stop all sessions",
      explanation: "Every running session is ended and its recording finalized.",
      run: (reason) => e.stopAllSessions({ reason, confirm: true }, authed()).response,
    },
    {
      label: "Lock down the system",
      title: "System lockdown",
      explanation: "Only admins will be able to call anything until the lockdown is lifted (or reverts).",
      run: (reason) => e.systemLockdown({ reason, confirm: true, autoRevertSeconds: 0 }, authed()).response,
    },
    {
      label: "Lift the lockdown",
      title: "Lift the lockdown",
      explanation: "Everyone may call the system again.",
      run: (reason) => e.liftLockdown({ reason, confirm: true }, authed()).response,
    },
  ];

  const buttons = controls.map((control) =>
    h(
      "button",
      {
        type: "button",
        class: "danger",
        onclick: async () => {
          const answer = await confirmDialog(control.title, control.explanation, {
            totp: true,
            action: control.label,
          });
          if (!answer) {
            status.say(`${control.title}: cancelled.`);
            return;
          }
          try {
            if (answer.code) await clients.me.stepUp({ code: answer.code }, authed()).response;
            await control.run(answer.reason);
            status.say(`${control.title}: done.`);
          } catch (error) {
            status.say(`${control.title} failed: ${describe(error)}`, true);
          }
          await load();
        },
      },
      control.label,
    ),
  );

  main.replaceChildren(
    h("h1", {}, "Emergency controls"),
    h("dl", { class: "details" }, h("dt", {}, "System mode"), mode, h("dt", {}, "Why"), details),
    h(
      "section",
      { "aria-labelledby": "controls-heading" },
      h("h2", { id: "controls-heading" }, "Controls"),
      h("p", {}, "Each control asks for a reason and a TOTP code, and is written to the audit log."),
      h("div", { class: "controls" }, ...buttons),
    ),
    status,
  );
  void load();
}
