// Transactions: newest first, filtered by status, wallet and chain; a search box that takes a
// request id, an attempt's hash or an Idempotency-Key.

import { api } from "/console/api.js";
import { ago, badge, el, ether, replace, shortHex, table } from "/console/dom.js";
import { watch } from "/console/live.js";

const STATUSES = ["queued", "signed", "submitted", "mined", "confirmed", "reverted", "failed",
  "cancelled", "expired"];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const HASH = /^0x[0-9a-f]{64}$/i;
const PAGE_SIZE = 50;

function select(name, label, options, value) {
  return el("label", {}, label, " ",
    el("select", { name },
      el("option", { value: "" }, "any"),
      options.map(([v, text]) => el("option", { value: v, selected: String(v) === value }, text))));
}

function filtersForm(params, wallets, chains, onChange) {
  const form = el("form", { class: "filters", role: "search" },
    select("status", "Status", STATUSES.map((s) => [s, s]), params.get("status") || ""),
    select("wallet", "Wallet", wallets.map((w) => [w.id, w.label || w.address]),
      params.get("wallet") || ""),
    select("chain_id", "Chain", chains.map((c) => [c.chain_id, `${c.name} (${c.chain_id})`]),
      params.get("chain_id") || ""),
    el("label", {}, "Search ",
      el("input", { name: "q", type: "search", value: params.get("q") || "", size: 40,
        placeholder: "id, hash or idempotency key", "aria-label": "Search by id, hash or idempotency key" })),
    el("button", { type: "submit" }, "Apply"));
  form.addEventListener("change", (event) => {
    if (event.target.tagName === "SELECT") onChange(form);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onChange(form);
  });
  return form;
}

function query(params) {
  const q = (params.get("q") || "").trim();
  const filters = {
    status: params.get("status"), wallet: params.get("wallet"), chain_id: params.get("chain_id"),
    order: "desc", limit: PAGE_SIZE,
  };
  if (HASH.test(q)) filters.hash = q;
  else if (q && !UUID.test(q)) filters.idempotency_key = q;
  return filters;
}

function rows(items, walletNames) {
  return table("Transactions, newest first",
    ["Id", "Status", "Wallet", "Chain", "To", "Value", "Nonce", "Hash", "Created"],
    items.map((t) => [
      el("a", { href: `#/transactions/${t.id}`, class: "mono" }, t.id.slice(0, 8)),
      badge(t.status),
      walletNames[t.wallet_id] || t.wallet_id.slice(0, 8),
      String(t.chain_id),
      shortHex(t.to, 8),
      ether(t.value, ""),
      t.nonce === null ? "—" : String(t.nonce),
      shortHex(t.hash),
      ago(t.created_at),
    ]), "No transaction matches.");
}

export function render(target, context) {
  const params = context.params;
  const list = el("div");
  const more = el("div");
  const error = el("p", { class: "error", role: "alert", hidden: true });
  let pages = [];
  let walletNames = {};

  const apply = (form) => {
    const next = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (value) next.set(name, value);
    const q = (next.get("q") || "").trim();
    if (UUID.test(q)) window.location.hash = `#/transactions/${q.toLowerCase()}`;
    else window.location.hash = `#/transactions?${next}`;
  };

  const show = () => {
    const items = pages.flatMap((p) => p.items);
    replace(list, rows(items, walletNames));
    const cursor = pages.at(-1)?.next_cursor;
    replace(more, cursor ? el("button", { type: "button", class: "quiet", onclick: older }, "Older") : null);
  };

  async function older() {
    const cursor = pages.at(-1).next_cursor;
    pages.push(await api.get("/v1/transactions", { ...query(params), cursor }));
    show();
  }

  const load = async () => {
    const first = await api.get("/v1/transactions", query(params));
    pages = [first, ...pages.slice(1)];
    error.hidden = true;
    show();
  };

  (async () => {
    try {
      const [wallets, chains] = await Promise.all([
        api.get("/v1/wallets", { limit: 500 }), api.get("/v1/chains")]);
      walletNames = Object.fromEntries(wallets.items.map((w) => [w.id, w.label || w.address.slice(0, 10)]));
      replace(target, el("h1", {}, "Transactions"),
        filtersForm(params, wallets.items, chains.items.filter((c) => c.enabled), apply),
        error, list, more);
    } catch (e) {
      replace(target, el("p", { class: "error", role: "alert" }, context.describe(e)));
      context.onError(e);
    }
  })();

  const live = watch(load, {
    everyMs: 3000,
    onError: context.reportIn(error),
    events: context.streamable ? (type) => type.startsWith("transaction.") : null,
  });
  return live.stop;
}
