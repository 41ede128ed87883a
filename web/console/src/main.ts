// The Lucid admin console: sign-in with a TRON wallet (TronLink's signMessageV2, or a
// signature pasted from `lucid sign`), then the pages of spec 06 over grpc-web. Routing
// is by the URL fragment (#/dashboard, #/sessions, #/sessions/<id>, ...).
import { h, append } from "./dom";
import { clients, authed, describe, isCode, setToken, token } from "./rpc";
import { signInPage } from "./signin";
import { dashboardPage } from "./pages/dashboard";
import { sessionPage, sessionsPage } from "./pages/sessions";
import { emergencyPage } from "./pages/emergency";
import { auditPage } from "./pages/audit";
import { nodesPage, payoutsPage, usersPage } from "./pages/lists";
import { configPage } from "./pages/config";
import { rolesPage } from "./pages/roles";
import { Role } from "./gen/lucid/common/v1/access";

export type Page = (main: HTMLElement, param: string) => (() => void) | void;

const PAGES: [string, string, Page][] = [
  ["dashboard", "Dashboard", dashboardPage],
  ["sessions", "Sessions", sessionsPage],
  ["nodes", "Nodes and pools", nodesPage],
  ["payouts", "Payouts", payoutsPage],
  ["audit", "Audit log", auditPage],
  ["emergency", "Emergency", emergencyPage],
  ["users", "Users and roles", usersPage],
  ["roles", "Console roles", rolesPage],
  ["config", "Configuration", configPage],
];

let leave: (() => void) | void = undefined;
let renders = 0;

function route(): [string, string] {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  return [parts[0] || "dashboard", decodeURIComponent(parts[1] ?? "")];
}

function nav(current: string): HTMLElement {
  return h(
    "nav",
    { "aria-label": "Console pages" },
    h(
      "ul",
      {},
      ...PAGES.map(([key, title]) =>
        h("li", {}, h("a", { href: `#/${key}`, "aria-current": key === current ? "page" : undefined }, title)),
      ),
    ),
  );
}

async function signOut(): Promise<void> {
  try {
    await clients.auth.logout({ logoutAllSessions: false }, authed());
  } catch {
    // the token is dropped either way
  }
  setToken("");
  location.hash = "#/dashboard";
  await render();
}

/** Draws the current page; ``moved`` (a navigation inside the console) puts the focus on
 * the new content, as a page load would put it at the top. */
async function render(moved = false): Promise<void> {
  const generation = ++renders;
  if (leave) leave();
  leave = undefined;
  const header = document.getElementById("top") as HTMLElement;
  const main = document.getElementById("main") as HTMLElement;
  header.replaceChildren(h("p", { class: "brand" }, "Lucid admin console"));
  main.replaceChildren();
  if (!token()) {
    document.title = "Sign in · Lucid admin console";
    signInPage(main, () => void render(true));
    return;
  }
  let who = "";
  try {
    const me = await clients.me.getMe({}, authed()).response;
    if (generation !== renders) return; // a newer navigation took over
    who = `${me.tronAddress} (${me.role === Role.SUPER_ADMIN ? "super admin" : "admin"})`;
  } catch (error) {
    if (generation !== renders) return;
    if (isCode(error, "UNAUTHENTICATED")) {
      setToken("");
      return render();
    }
    main.replaceChildren(
      h("h1", {}, "Not an admin"),
      h(
        "p",
        { role: "alert" },
        `This account may not use the console: ${describe(error)}. An operator makes the first ` +
          "admin with `lucid admin grant TRON_ADDRESS super_admin`.",
      ),
      h("button", { type: "button", onclick: () => void signOut() }, "Sign out"),
    );
    return;
  }
  const [key, param] = route();
  const page = PAGES.find(([k]) => k === key) ?? PAGES[0];
  append(
    header,
    nav(page[0]),
    h(
      "div",
      { class: "who" },
      h("span", { "data-testid": "signed-in-as" }, who),
      h("button", { type: "button", onclick: () => void signOut() }, "Sign out"),
    ),
  );
  document.title = `${page[1]} · Lucid admin console`;
  leave = page[2](main, param);
  if (moved) main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", () => void render(true));
// the skip link moves the focus without touching the fragment (the fragment routes)
document.querySelector("a.skip")?.addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("main")?.focus();
});
void render();
