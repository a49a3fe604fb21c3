// Wallets: status and per-chain balances; pause, resume, disable and per-chain enable/disable
// after a confirmation, for a key with the `wallets` scope. Never any key material: the API
// has none to give.

import { PAGE_SIZE, api, can, restricted } from "/console/api.js";
import { actor, badge, el, ether, replace, table } from "/console/dom.js";
import { watch } from "/console/live.js";

const STATUS_ACTIONS = {
  active: [["paused", "Pause"], ["disabled", "Disable"]],
  paused: [["active", "Resume"], ["disabled", "Disable"]],
  disabled: [["active", "Re-enable"]],
};
const EXPLAIN = {
  paused: "Its queued requests wait until it is resumed; requests already sent are still tracked.",
  disabled: "Its queued requests fail. Only an admin key can make it active again.",
  active: "Its lanes resume signing and sending.",
};

function chainsCell(wallet, lanes, symbols, buttons) {
  const items = wallet.chain_ids.map((chainId) => {
    const lane = lanes[`${wallet.id}:${chainId}`];
    return el("li", {}, `${chainId}: `,
      lane ? ether(lane.balance_wei, symbols[chainId]) : "—",
      buttons ? buttons.disableChain(chainId) : null);
  });
  return el("ul", { class: "plain" }, items, buttons ? el("li", {}, buttons.enableChain()) : null);
}

// Balances come from GET /v1/lanes (every page: lanes are ordered by chain, not by wallet);
// a restricted key, refused that route, reads its own wallets' lanes one by one.
async function lanesOf(wallets, me) {
  if (!restricted(me)) return (await api.pages("/v1/lanes", { limit: PAGE_SIZE }, Infinity)).items;
  const pairs = wallets.flatMap((w) => w.chain_ids
    .filter((c) => !me.chain_ids || me.chain_ids.includes(c)).map((c) => [w.id, c]));
  return Promise.all(pairs.slice(0, 50).map(([walletId, chainId]) =>
    api.get(`/v1/wallets/${walletId}/chains/${chainId}`)));
}

export function render(target, context) {
  const writable = can(context.me, "wallets");
  const error = el("p", { class: "error", role: "alert", hidden: true });
  const notice = el("p", { class: "notice", role: "status", "aria-live": "polite" });
  const body = el("div");
  const more = el("div");
  replace(target, el("h1", {}, "Wallets"), error, notice, body, more);
  let chains = [];
  let live = null;

  const act = actor({ notice, onError: context.reportIn(error), refresh: () => live.refresh() });

  const statusButtons = (w) => (STATUS_ACTIONS[w.status] || []).map(([status, label]) =>
    el("button", {
      type: "button", class: status === "disabled" ? "danger" : "",
      "data-action": status, "aria-label": `${label} wallet ${w.label || w.address}`,
      onclick: () => act(`${label} wallet ${w.label || w.address}?`, EXPLAIN[status], label,
        () => api.patch(`/v1/wallets/${w.id}`, { status })),
    }, `${label}…`));

  const chainButtons = (w) => ({
    disableChain: (chainId) => el("button", {
      type: "button", class: "quiet small", "aria-label": `Disable wallet on chain ${chainId}`,
      onclick: () => act(`Disable the wallet on chain ${chainId}?`,
        "No new request of this wallet is signed on that chain; its nonce cursor is kept.",
        "Disable on chain", () => api.delete(`/v1/wallets/${w.id}/chains/${chainId}`)),
    }, "disable"),
    enableChain: () => {
      const choices = chains.filter((c) => c.enabled && !w.chain_ids.includes(c.chain_id));
      if (choices.length === 0) return null;
      const picker = el("select", { "aria-label": `Chain to enable wallet ${w.label || w.address} on` },
        choices.map((c) => el("option", { value: c.chain_id }, `${c.name} (${c.chain_id})`)));
      return el("span", {}, picker, el("button", {
        type: "button", class: "quiet small",
        onclick: () => act(`Enable the wallet on chain ${picker.value}?`,
          "Requests for this wallet on that chain will be signed and sent.", "Enable on chain",
          () => api.put(`/v1/wallets/${w.id}/chains/${picker.value}`)),
      }, "enable"));
    },
  });

  let walletPages = 1;
  const load = async () => {
    const [wallets, chainList] = await Promise.all([
      api.pages("/v1/wallets", { limit: PAGE_SIZE }, walletPages),
      api.get("/v1/chains"),
    ]);
    const lanes = { items: await lanesOf(wallets.items, context.me) };
    replace(more, wallets.more ? el("button", {
      type: "button", class: "quiet",
      onclick: () => {
        walletPages += 1;
        live.refresh();
      },
    }, `Show ${PAGE_SIZE} more wallets`) : null);
    chains = chainList.items;
    const symbols = Object.fromEntries(chains.map((c) => [c.chain_id, c.native_symbol]));
    const byLane = Object.fromEntries(lanes.items.map((l) => [`${l.wallet_id}:${l.chain_id}`, l]));
    const headers = ["Wallet", "Address", "Status", "Signer", "Balance per chain"];
    if (writable) headers.push("Actions");
    replace(body, table("Wallets", headers, wallets.items.map((w) => {
      const cells = [
        w.label || "—",
        el("span", { class: "mono" }, w.address),
        badge(w.status),
        w.signer.key_ref ? `${w.signer.type} (${w.signer.key_ref})` : w.signer.type,
        chainsCell(w, byLane, symbols, writable ? chainButtons(w) : null),
      ];
      if (writable) cells.push(el("div", { class: "actions" }, statusButtons(w)));
      return cells;
    }), "No wallet yet."));
    error.hidden = true;
  };
  live = watch(load, {
    everyMs: 5000,
    onError: context.reportIn(error),
  });
  return live.stop;
}
