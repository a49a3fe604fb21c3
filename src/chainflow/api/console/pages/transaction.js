// One transaction: its summary, a timeline of every status change and every attempt signed,
// the attempts with their fees and error classes, the receipt, and cancel while pending.

import { api, can } from "/console/api.js";
import { badge, confirmAction, el, ether, gwei, replace, table, time } from "/console/dom.js";
import { watch } from "/console/live.js";

const FINAL = new Set(["confirmed", "reverted", "failed", "cancelled", "expired"]);

function detailText(detail) {
  if (!detail) return "";
  return Object.entries(detail).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ");
}

function timeline(tx) {
  const entries = [
    ...tx.events.map((e) => ({
      at: e.at,
      what: el("span", {}, e.from_status ? badge(e.from_status) : "created", " → ", badge(e.to_status)),
      detail: detailText(e.detail),
    })),
    ...tx.attempts.filter((a) => a.created_at).map((a) => ({
      at: a.created_at,
      what: el("span", {}, `${a.kind} attempt signed`),
      detail: `nonce ${a.nonce} · ${a.hash}`,
    })),
  ].sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  return el("section", { "aria-labelledby": "timeline-title" },
    el("h2", { id: "timeline-title" }, "Timeline"),
    el("ol", { class: "timeline" }, entries.map((e) =>
      el("li", {}, time(e.at), " ", e.what, e.detail ? el("div", { class: "detail mono" }, e.detail) : null))));
}

function fees(a) {
  if (a.gas_price !== null) return gwei(a.gas_price);
  return el("span", {}, `max ${gwei(a.max_fee_per_gas)}`, el("br"), `tip ${gwei(a.max_priority_fee_per_gas)}`);
}

function attempts(tx) {
  return el("section", { "aria-labelledby": "attempts-title" },
    el("h2", { id: "attempts-title" }, "Attempts"),
    table("Every signed variant: original, fee bumps, cancel",
      ["Kind", "Status", "Nonce", "Fees", "Gas limit", "Hash", "Sent", "Error class"],
      tx.attempts.map((a) => [
        a.kind, a.status, String(a.nonce), fees(a), String(a.gas_limit),
        el("span", { class: "mono wrap" }, a.hash),
        a.first_sent_at ? el("span", {}, time(a.first_sent_at), ` ×${a.broadcast_count}`) : "not yet",
        a.error_class || "—",
      ]), "No attempt yet: the request has no nonce."));
}

function receipt(tx) {
  const r = tx.receipt;
  return el("section", { "aria-labelledby": "receipt-title" },
    el("h2", { id: "receipt-title" }, "Receipt"),
    r ? el("dl", { class: "facts" },
      el("dt", {}, "Block"), el("dd", {}, String(r.block_number)),
      el("dt", {}, "Block hash"), el("dd", { class: "mono wrap" }, r.block_hash),
      el("dt", {}, "Status"), el("dd", {}, r.status === 1 ? "success" : "reverted"),
      el("dt", {}, "Gas used"), el("dd", {}, r.gas_used === null ? "—" : String(r.gas_used)),
      el("dt", {}, "Effective gas price"), el("dd", {}, gwei(r.effective_gas_price)),
      el("dt", {}, "Confirmations"), el("dd", {}, String(tx.confirmations)))
      : el("p", { class: "empty" }, "No receipt yet."));
}

function summary(tx) {
  return el("dl", { class: "facts" },
    el("dt", {}, "Status"), el("dd", {}, badge(tx.status), tx.cancel_requested ? " (cancel requested)" : ""),
    el("dt", {}, "Chain"), el("dd", {}, String(tx.chain_id)),
    el("dt", {}, "From"), el("dd", { class: "mono" }, tx.from),
    el("dt", {}, "To"), el("dd", { class: "mono" }, tx.to),
    el("dt", {}, "Value"), el("dd", {}, ether(tx.value)),
    el("dt", {}, "Nonce"), el("dd", {}, tx.nonce === null ? "—" : String(tx.nonce)),
    el("dt", {}, "Hash"), el("dd", { class: "mono wrap" }, tx.hash || "—"),
    tx.error ? [el("dt", {}, "Error"), el("dd", { class: "bad" }, `${tx.error.code}: ${tx.error.message}`)] : null,
    el("dt", {}, "Created"), el("dd", {}, time(tx.created_at)),
    el("dt", {}, "Updated"), el("dd", {}, time(tx.updated_at)));
}

export function render(target, context, id) {
  const body = el("div");
  const actions = el("div", { class: "actions" });
  const error = el("p", { class: "error", role: "alert", hidden: true });
  replace(target, el("p", {}, el("a", { href: "#/transactions" }, "← Transactions")),
    el("h1", {}, "Transaction ", el("span", { class: "mono" }, id)), error, actions, body);
  let live = null;

  const cancel = async () => {
    const ok = await confirmAction("Cancel this transaction?",
      "A queued request is cancelled at once; a signed or sent one gets a 0-value self-transfer at its nonce, and the final status says which won.",
      "Cancel transaction");
    if (!ok) return;
    try {
      await api.post(`/v1/transactions/${id}/cancel`);
      await live.refresh();
    } catch (e) {
      context.reportIn(error)(e);
    }
  };

  const load = async () => {
    const tx = await api.get(`/v1/transactions/${encodeURIComponent(id)}`);
    error.hidden = true;
    const pending = !FINAL.has(tx.status);
    replace(actions, pending && can(context.me, "transactions:write") && !tx.cancel_requested
      ? el("button", { type: "button", class: "danger", onclick: cancel }, "Cancel…") : null);
    replace(body, summary(tx), timeline(tx), attempts(tx), receipt(tx));
    if (!pending) live.stop();
  };
  live = watch(load, {
    everyMs: 2000,
    onError: context.reportIn(error),
  });
  return () => live.stop();
}
