// Overview: chains (head, age, endpoints), lanes (pending work next to the chain's view) and
// requests of the last hour by status.

import { PAGE_SIZE, api, restricted } from "/console/api.js";
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

function lanesView(lanes, chains, more) {
  const symbol = Object.fromEntries(chains.map((c) => [c.chain_id, c.native_symbol]));
  return el("section", { "aria-labelledby": "lanes-title" },
    el("h2", { id: "lanes-title" }, "Lanes"),
    table("Lanes: one per wallet and chain",
      ["Wallet", "Chain", "Queued", "In flight", "Next nonce / chain", "Oldest pending", "Balance"],
      lanes.map((l) => [
        el("span", {}, el("a", { href: `#/transactions?wallet=${l.wallet_id}` },
          l.label || l.address), " ", l.wallet_status === "active" ? null : badge(l.wallet_status)),
        String(l.chain_id),
        l.queued === null ? "—" : String(l.queued),
        String(l.in_flight),
        el("span", { class: l.chain_nonce !== null && l.chain_nonce < l.next_nonce ? "warn" : "" },
          `${l.next_nonce} / ${l.chain_nonce ?? "—"}`),
        ago(l.oldest_pending_at),
        ether(l.balance_wei, symbol[l.chain_id]),
      ]), "No wallet is enabled on an enabled chain."),
    more);
}

// A key limited to some wallets or chains is refused what shows every wallet (lanes across
// wallets, counts, the event stream): its own lanes are read one by one instead.
const RESTRICTED_LANES = 50;

async function ownLanes(me) {
  const wallets = await api.pages("/v1/wallets", { limit: PAGE_SIZE }, 1);
  const pairs = wallets.items.flatMap((w) => w.chain_ids
    .filter((c) => !me.chain_ids || me.chain_ids.includes(c)).map((c) => [w, c]))
    .slice(0, RESTRICTED_LANES);
  return Promise.all(pairs.map(async ([w, chainId]) => {
    const lane = await api.get(`/v1/wallets/${w.id}/chains/${chainId}`);
    return { ...lane, address: w.address, label: w.label, wallet_status: w.status,
      queued: null, oldest_pending_at: null };
  }));
}

function restrictedNote(me) {
  const limits = [me.wallet_ids ? `${me.wallet_ids.length} wallet(s)` : null,
    me.chain_ids ? `chain(s) ${me.chain_ids.join(", ")}` : null].filter(Boolean).join(" and ");
  return el("p", { class: "notice", role: "note" },
    `This API key is restricted to ${limits}. Requests by status, the lane summary across `
    + "wallets and live updates show every wallet, so the server refuses them to this key "
    + "(key_restricted): shown here are the chains and this key's own lanes (queued and oldest "
    + "pending need an unrestricted key), refreshed by polling.");
}

export function render(target, context) {
  const updated = el("p", { class: "muted", "aria-live": "polite" });
  const body = el("div");
  const error = el("p", { class: "error", role: "alert", hidden: true });
  const limited = restricted(context.me);
  replace(target, el("h1", {}, "Overview"), limited ? restrictedNote(context.me) : null,
    updated, error, body);
  let lanePages = 1;
  let how = "";
  let at = null;
  const say = () => {
    updated.textContent = at ? `Updated ${at}; ${how}.` : `${how}.`;
  };
  let live = null;
  const moreButton = (more) => (more ? el("button", {
    type: "button", class: "quiet",
    onclick: () => {
      lanePages += 1;
      live.refresh();
    },
  }, `Show ${PAGE_SIZE} more lanes`) : null);
  const load = async () => {
    if (limited) {
      const [chains, lanes] = await Promise.all([api.get("/v1/chains/status"), ownLanes(context.me)]);
      replace(body, chainsView(chains.items), lanesView(lanes, chains.items, null));
    } else {
      const [chains, lanes, counts] = await Promise.all([
        api.get("/v1/chains/status"),
        api.pages("/v1/lanes", { limit: PAGE_SIZE }, lanePages),
        api.get("/v1/transactions/counts", { window_s: 3600 }),
      ]);
      replace(body, countsView(counts), chainsView(chains.items),
        lanesView(lanes.items, chains.items, moreButton(lanes.more)));
    }
    error.hidden = true;
    at = new Date().toLocaleTimeString();
    say();
  };
  live = watch(load, {
    everyMs: 5000,
    liveMs: 5000,  // chain heads, nonces and balances: no event says they changed
    onError: context.reportIn(error),
    events: context.streamable
      ? (type) => type.startsWith("transaction.") || type === "wallet.low_balance" : null,
    status: (text) => {
      how = text === "live" ? "live from the event stream, chains every 5 s" : text;
      say();
    },
  });
  return live.stop;
}
