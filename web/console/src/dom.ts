// Small DOM helpers: elements with attributes and children, tables with captions and
// header scopes, labelled fields, a status line, a confirmation dialog and a sparkline.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") element.addEventListener(name.replace(/^on/, ""), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, ...children);
  return element;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
}

let fieldCount = 0;

/** A labelled input (the label names it for assistive technology). */
export function field(
  label: string,
  input: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement,
): HTMLElement {
  fieldCount += 1;
  input.id ||= `field-${fieldCount}`;
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input);
}

export function select(name: string, options: [string, string][]): HTMLSelectElement {
  return h("select", { name }, ...options.map(([value, text]) => h("option", { value }, text)));
}

/** A table with a caption, column headers (scope=col) and rows. */
export function table(caption: string, columns: string[], rows: Child[][]): HTMLTableElement {
  return h(
    "table",
    {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, ...columns.map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      ...(rows.length
        ? rows.map((row) => h("tr", {}, ...row.map((cell) => h("td", {}, cell))))
        : [h("tr", {}, h("td", { colspan: columns.length }, "Nothing to show."))]),
    ),
  );
}

/** The live status line of a page: results and errors are announced. */
export function statusLine(): HTMLParagraphElement & { say(text: string, bad?: boolean): void } {
  const line = h("p", { role: "status", "aria-live": "polite", class: "status" }) as HTMLParagraphElement & {
    say(text: string, bad?: boolean): void;
  };
  line.say = (text: string, bad = false) => {
    line.textContent = text;
    line.classList.toggle("error", bad);
  };
  return line;
}

export interface Confirmation {
  reason: string;
  code: string;
}

/**
 * A modal confirmation: what will happen, a reason, optionally a TOTP code (step-up).
 * Resolves with the inputs, or null when cancelled.
 */
export function confirmDialog(
  title: string,
  explanation: string,
  options: { totp?: boolean; action?: string } = {},
): Promise<Confirmation | null> {
  const reason = h("input", { name: "reason", required: true, maxlength: 255, autocomplete: "off" });
  const code = h("input", {
    name: "totp",
    inputmode: "numeric",
    pattern: "[0-9]{6}",
    maxlength: 6,
    autocomplete: "one-time-code",
  });
  const form = h(
    "form",
    { method: "dialog" },
    h("h2", { id: "dialog-title" }, title),
    h("p", { id: "dialog-text" }, explanation),
    field("Reason", reason),
    options.totp ? field("TOTP code (step-up)", code) : null,
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", value: "confirm", class: "danger" }, options.action ?? "Confirm"),
      h("button", { type: "submit", value: "cancel", formnovalidate: true }, "Cancel"),
    ),
  );
  const dialog = h(
    "dialog",
    { "aria-labelledby": "dialog-title", "aria-describedby": "dialog-text" },
    form,
  );
  document.body.appendChild(dialog);
  dialog.showModal();
  reason.focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const confirmed = dialog.returnValue === "confirm";
      dialog.remove();
      resolve(confirmed ? { reason: reason.value.trim(), code: code.value.trim() } : null);
    });
  });
}

const SVG = "http://www.w3.org/2000/svg";

/** A line chart of the last values, as an SVG image with a text alternative. */
export function sparkline(label: string, values: number[], max?: number): SVGSVGElement {
  const width = 240;
  const height = 60;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  const last = values.length ? values[values.length - 1] : 0;
  svg.setAttribute("aria-label", `${label}: ${values.length} samples, latest ${last.toFixed(1)}`);
  const top = Math.max(max ?? 0, ...values, 1);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - (v / top) * (height - 4) - 2).toFixed(1)}`);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "currentColor");
  line.setAttribute("stroke-width", "2");
  svg.appendChild(line);
  return svg;
}
