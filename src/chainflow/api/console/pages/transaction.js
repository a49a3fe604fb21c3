// One transaction: its summary, a timeline of every status change and every attempt signed,
// the attempts with their fees and error classes, the receipt, its webhook deliveries (retry
// for a failed one), and cancel while pending. It follows the event stream while pending, then
// polls while a delivery is pending.

import { api, can, restricted } from "/console/api.js";
import { badge, confirmAction, el, ether, gwei, replace, table, time } from "/console/dom.js";
import { watch } from "/console/live.js";

const DELIVERY_GRACE_MS = 60000;
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

function lastAttempt(d) {
  const a = d.attempts.at(-1);
  if (!a) return "not yet";
  return el("span", {}, time(a.at), ` ${a.status_code ?? "—"}`, a.error ? ` ${a.error}` : "",
    el("span", { class: "muted" }, ` ${a.duration_ms} ms`));
}

function deliveries(list, retry) {
  return el("section", { "aria-labelledby": "deliveries-title" },
    el("h2", { id: "deliveries-title" }, "Webhook deliveries"),
    table("Each event of this transaction to each webhook endpoint",
      ["Event", "Webhook", "Status", "Attempts", "Last attempt", "Next attempt", ""],
      list.map((d) => [
        d.event_type,
        el("span", { class: "mono", title: d.webhook_id }, d.webhook_id.slice(0, 8)),
        badge(d.status),
        String(d.attempts.length),
        lastAttempt(d),
        d.next_attempt_at ? time(d.next_attempt_at) : "—",
        retry && d.status === "failed" ? el("button", {
          type: "button", class: "small", onclick: () => retry(d),
          "aria-label": `Retry delivery of ${d.event_type} to webhook ${d.webhook_id.slice(0, 8)}`,
        }, "Retry") : "",
      ]), "No webhook delivery: no endpoint subscribes to this transaction's events."));
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

  const retry = can(context.me, "webhooks") && !restricted(context.me) ? async (d) => {
    try {
      await api.post(`/v1/webhooks/${d.webhook_id}/deliveries/${d.id}/retry`);
      follow(false);
    } catch (e) {
      context.reportIn(error)(e);
    }
  } : null;

  const load = async () => {
    const [tx, sent] = await Promise.all([
      api.get(`/v1/transactions/${encodeURIComponent(id)}`),
      api.pages(`/v1/transactions/${encodeURIComponent(id)}/deliveries`, { limit: 500 }, 1),
    ]);
    error.hidden = true;
    const pending = !FINAL.has(tx.status);
    replace(actions, pending && can(context.me, "transactions:write") && !tx.cancel_requested
      ? el("button", { type: "button", class: "danger", onclick: cancel }, "Cancel…") : null);
    replace(body, summary(tx), timeline(tx), attempts(tx), receipt(tx), deliveries(sent.items, retry));
    // Deliveries of its last event appear a moment after it (fan-out runs after the commit).
    const delivering = sent.items.some((d) => d.status === "pending")
      || Date.now() - Date.parse(tx.updated_at) < DELIVERY_GRACE_MS;
    if (!pending && streaming) follow(false);  // no more events of it: poll its deliveries
    else if (!pending && !delivering) live.stop();
  };
  let streaming = false;
  // Pending: reload on each event of this transaction (polling until the stream is open).
  // Final: poll while a webhook delivery is pending.
  let closed = false;
  function follow(stream) {
    live?.stop();
    if (closed) return;
    streaming = stream && context.streamable;
    live = watch(load, {
      everyMs: stream ? 2000 : 3000,
      onError: context.reportIn(error),
      events: streaming ? (type, event) => event.data?.transaction?.id === id : null,
    });
  }
  follow(true);
  return () => {
    closed = true;
    live.stop();
  };
}
