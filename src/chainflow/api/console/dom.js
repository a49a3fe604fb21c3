// Building blocks for the pages: elements are made with text content only (never innerHTML),
// so nothing an API answer holds can become markup.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function table(caption, headers, rows, empty = "None.") {
  if (rows.length === 0) return el("p", { class: "empty" }, empty);
  return el("table", {},
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))));
}

export function badge(status) {
  return el("span", { class: `badge s-${status}` }, status);
}

export function ago(isoOrUnix) {
  if (isoOrUnix === null || isoOrUnix === undefined) return "—";
  const at = typeof isoOrUnix === "number" ? isoOrUnix * 1000 : Date.parse(isoOrUnix);
  return duration((Date.now() - at) / 1000);
}

export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

export function time(iso) {
  if (!iso) return "—";
  const at = new Date(iso);
  return el("time", { datetime: iso, title: iso }, at.toISOString().replace("T", " ").slice(0, 23));
}

export function shortHex(hex, keep = 10) {
  if (!hex) return "—";
  if (hex.length <= keep * 2) return hex;
  return el("span", { title: hex, class: "mono" }, `${hex.slice(0, keep)}…${hex.slice(-6)}`);
}

const WEI_PER_GWEI = 10n ** 9n;
const WEI_PER_ETH = 10n ** 18n;

export function ether(wei, symbol = "ETH") {
  if (wei === null || wei === undefined) return "—";
  const value = BigInt(wei);
  const fraction = (value % WEI_PER_ETH).toString().padStart(18, "0").replace(/0+$/, "");
  return `${value / WEI_PER_ETH}${fraction ? `.${fraction}` : ""} ${symbol}`.trim();
}

export function gwei(wei) {
  if (wei === null || wei === undefined) return "—";
  const value = BigInt(wei);
  const fraction = (value % WEI_PER_GWEI).toString().padStart(9, "0").slice(0, 3);
  return `${value / WEI_PER_GWEI}.${fraction} gwei`;
}

export function replace(target, ...children) {
  target.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

const confirmDialog = () => document.getElementById("confirm");

// Ask before a change: resolves true only when the operator pressed the confirming button.
export function confirmAction(title, text, action = "Confirm") {
  const dialog = confirmDialog();
  dialog.querySelector("#confirm-title").textContent = title;
  dialog.querySelector("#confirm-text").textContent = text;
  dialog.querySelector("#confirm-ok").textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

// A page's way to act: ask with `confirmAction`, call, then say so in `notice` and refresh
// (a failure goes to `onError`).
export function actor({ notice, onError, refresh }) {
  return async (title, text, label, call) => {
    if (!(await confirmAction(title, text, label))) return;
    try {
      await call();
      notice.textContent = `Done: ${title.replace(/\?$/, "")}.`;
      await refresh();
    } catch (e) {
      onError(e);
    }
  };
}
