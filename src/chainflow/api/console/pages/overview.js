// Overview: chains (head, age, endpoints), lanes (pending work next to the chain's view) and
// requests of the last hour by status.

import { api } from "/console/api.js";
import { ago, badge, duration, el, ether, replace, table } from "/console/dom.js";
import { watch } from "/console/live.js";

const STATUSES = ["queued", "signed", "submitted", "mined", "confirmed", "reverted", "failed",
  "cancelled", "expired"];

function countsView(counts) {
  return el("section", { "aria-labelledby": "counts-title" },
    el("h2", { id: "counts-title" }, "Requests created in the last hour"),
    el("ul", { class: "counts" }, STATUSES.map((status) =>
      el("li", {},
        el("a", { href: `#/transactions?status=${status}`, class: "count" },
          el("span", { class: "number" }, String(counts.counts[status] ?? 0)), badge(status))))));
}

function endpoints(chain) {
  if (chain.endpoints.length === 0) return el("span", { class: "muted" }, "no RPC URL");
  return el("ul", { class: "plain" }, chain.endpoints.map((e) => el("li", {},
    el("span", { class: e.healthy ? "ok" : e.healthy === false ? "bad" : "muted" },
      e.healthy ? "● " : e.healthy === false ? "✕ " : "○ "),
    e.url,
    e.healthy ? el("span", { class: "muted" }, ` ${e.latency_ms} ms`) : null,
    e.error ? el("span", { class: "bad" }, ` ${e.error}`) : null)));
}

function chainsView(chains) {
  const enabled = chains.filter((c) => c.enabled);
  const disabled = chains.length - enabled.length;
  return el("section", { "aria-labelledby": "chains-title" },
    el("h2", { id: "chains-title" }, "Chains"),
    table("Enabled chains", ["Chain", "Head block", "Head age", "Read", "RPC endpoints"],
      enabled.map((c) => [
        el("span", {}, `${c.name} `, el("span", { class: "muted" }, `(${c.chain_id})`)),
        c.head_block === null ? "—" : String(c.head_block),
        c.head_age_s === null ? "—" : el("span", { class: c.head_age_s > 300 ? "bad" : "" },
          duration(c.head_age_s)),
        c.read_at === null ? "—" : `${ago(c.read_at)} ago`,
        endpoints(c),
      ]), "No chain is enabled."),
    disabled ? el("p", { class: "muted" }, `${disabled} more chains are disabled.`) : null);
}

function lanesView(lanes, chains) {
  const symbol = Object.fromEntries(chains.map((c) => [c.chain_id, c.native_symbol]));
  return el("section", { "aria-labelledby": "lanes-title" },
    el("h2", { id: "lanes-title" }, "Lanes"),
    table("Lanes: one per wallet and chain",
      ["Wallet", "Chain", "Queued", "In flight", "Next nonce / chain", "Oldest pending", "Balance"],
      lanes.map((l) => [
        el("span", {}, el("a", { href: `#/transactions?wallet=${l.wallet_id}` },
          l.label || l.address), " ", l.wallet_status === "active" ? null : badge(l.wallet_status)),
        String(l.chain_id),
        String(l.queued),
        String(l.in_flight),
        el("span", { class: l.chain_nonce !== null && l.chain_nonce < l.next_nonce ? "warn" : "" },
          `${l.next_nonce} / ${l.chain_nonce ?? "—"}`),
        ago(l.oldest_pending_at),
        ether(l.balance_wei, symbol[l.chain_id]),
      ]), "No wallet is enabled on an enabled chain."));
}

export function render(target, context) {
  const updated = el("p", { class: "muted", "aria-live": "polite" });
  const body = el("div");
  const error = el("p", { class: "error", role: "alert", hidden: true });
  replace(target, el("h1", {}, "Overview"), updated, error, body);
  const load = async () => {
    const [chains, lanes, counts] = await Promise.all([
      api.get("/v1/chains/status"),
      api.get("/v1/lanes", { limit: 500 }),
      api.get("/v1/transactions/counts", { window_s: 3600 }),
    ]);
    error.hidden = true;
    replace(body, countsView(counts), chainsView(chains.items), lanesView(lanes.items, chains.items));
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every 5 s.`;
  };
  const live = watch(load, {
    everyMs: 5000,
    onError: context.reportIn(error),
  });
  return live.stop;
}
