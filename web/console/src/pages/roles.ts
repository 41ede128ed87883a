// Console roles (spec 06 §4, AdminRbacService): the roles with their permissions, a
// custom role made from the permission list, deleted with a confirmation, and a user
// given a console role (or none). Pre-provisioning a user (AdminUserService CreateUser)
// is not offered: the server does not build it; users appear when their wallet signs in.
import { confirmDialog, field, h, select, statusLine, table } from "../dom";
import { authed, clients, describe } from "../rpc";
import type { ConsolePermissionInfo, ConsoleRole } from "../gen/lucid/admin/v1/admin";

export function rolesPage(main: HTMLElement): void {
  const status = statusLine();
  const roles = h("div", { class: "table-holder" });
  const permissions = h("fieldset", {}, h("legend", {}, "Permissions"));
  const name = h("input", { name: "role_name", pattern: "[a-z][a-z0-9_]{2,49}", autocomplete: "off", required: true });
  const description = h("input", { name: "role_description", maxlength: 255, autocomplete: "off" });
  const userId = h("input", { name: "user_id", spellcheck: "false", autocomplete: "off", placeholder: "user id (UUID)" });
  const roleChoice = select("console_role", [["", "No console role"]]);
  let known: ConsolePermissionInfo[] = [];

  async function load(): Promise<void> {
    try {
      const reply = await clients.rbac.listRoles({ pageSize: 100, pageToken: "" }, authed()).response;
      const names = new Map(known.map((p) => [p.permission, p.name]));
      roles.replaceChildren(
        table(
          "Console roles",
          ["Role", "Description", "Permissions", "Users", "Built in", "Actions"],
          reply.roles.map((r: ConsoleRole) => [
            r.name,
            r.description,
            r.permissions.map((p) => names.get(p) ?? String(p)).join(", "),
            r.userCount,
            r.isSystem ? "yes" : "no",
            r.isSystem
              ? ""
              : h(
                  "button",
                  {
                    type: "button",
                    class: "danger",
                    "aria-label": `Delete role ${r.name}`,
                    onclick: () => void remove(r),
                  },
                  "Delete",
                ),
          ]),
        ),
      );
      roleChoice.replaceChildren(
        h("option", { value: "" }, "No console role"),
        ...reply.roles.map((r) => h("option", { value: r.roleId }, r.name)),
      );
    } catch (error) {
      status.say(`Roles failed: ${describe(error)}`, true);
    }
  }

  async function loadPermissions(): Promise<void> {
    try {
      known = (await clients.rbac.listConsolePermissions({}, authed()).response).permissions;
      permissions.replaceChildren(
        h("legend", {}, "Permissions"),
        ...known.map((p) => {
          const box = h("input", { type: "checkbox", name: "permission", value: String(p.permission) });
          return h("div", { class: "check" }, h("label", {}, box, ` ${p.name}`), h("small", {}, ` ${p.description}`));
        }),
      );
    } catch (error) {
      status.say(`Permissions failed: ${describe(error)}`, true);
    }
  }

  async function create(event: Event): Promise<void> {
    event.preventDefault();
    const chosen = [...permissions.querySelectorAll<HTMLInputElement>("input:checked")].map((b) => Number(b.value));
    if (!/^[a-z][a-z0-9_]{2,49}$/.test(name.value)) {
      status.say("Not created: a role name is 3–50 lowercase letters, digits or _, starting with a letter.", true);
      name.focus();
      return;
    }
    if (!chosen.length) {
      status.say("Not created: choose at least one permission.", true);
      return;
    }
    try {
      const reply = await clients.rbac.createRole(
        { name: name.value, description: description.value.trim(), permissions: chosen },
        authed(),
      ).response;
      status.say(`Role ${reply.role?.name ?? name.value} created.`);
      name.value = "";
      description.value = "";
      for (const box of permissions.querySelectorAll<HTMLInputElement>("input:checked")) box.checked = false;
      await load();
    } catch (error) {
      status.say(`Not created: ${describe(error)}`, true);
    }
  }

  async function remove(role: ConsoleRole): Promise<void> {
    const answer = await confirmDialog(
      "Delete role",
      `The console role ${role.name} will be deleted; its ${role.userCount} holders lose it.`,
      { action: "Delete" },
    );
    if (!answer) return;
    try {
      await clients.rbac.deleteRole({ roleId: role.roleId }, authed()).response;
      status.say(`Role ${role.name} deleted.`);
      await load();
    } catch (error) {
      status.say(`Not deleted: ${describe(error)}`, true);
    }
  }

  async function assign(event: Event): Promise<void> {
    event.preventDefault();
    try {
      const reply = await clients.rbac.assignConsoleRole(
        { userId: userId.value.trim(), roleId: roleChoice.value },
        authed(),
      ).response;
      status.say(
        reply.role
          ? `User ${reply.userId} now has the role ${reply.role.name}.`
          : `User ${reply.userId} has no console role.`,
      );
      await load();
    } catch (error) {
      status.say(`Not assigned: ${describe(error)}`, true);
    }
  }

  main.replaceChildren(
    h("h1", {}, "Console roles"),
    roles,
    h(
      "form",
      { "aria-labelledby": "new-role-title", novalidate: true, onsubmit: (e: Event) => void create(e) },
      h("h2", { id: "new-role-title" }, "New role"),
      field("Role name", name),
      field("Description", description),
      permissions,
      h("button", { type: "submit" }, "Create the role"),
    ),
    h(
      "form",
      { "aria-labelledby": "assign-title", onsubmit: (e: Event) => void assign(e) },
      h("h2", { id: "assign-title" }, "Give a user a console role"),
      field("User id", userId),
      field("Console role", roleChoice),
      h("button", { type: "submit" }, "Assign"),
    ),
    h(
      "p",
      {},
      "Users appear when their wallet first signs in; pre-provisioning a user for a TRON address is not available yet.",
    ),
    status,
  );
  void loadPermissions().then(load);
}
