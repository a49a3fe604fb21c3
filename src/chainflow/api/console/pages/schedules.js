// Schedules: the list, and one schedule's page with its runs (time, outcome, transaction,
// why one was skipped); pause, resume and cancel after a confirmation. The API gives
// schedules to keys with the `schedules` scope only, and to no restricted key.

import { PAGE_SIZE, api, can, restricted, serverHas } from "/console/api.js";
import { actor, badge, el, ether, replace, table, time } from "/console/dom.js";
import { watch } from "/console/live.js";

// [new status, button, the confirming button] (not "Cancel": the dialog's own way out).
const ACTIONS = {
  active: [["paused", "Pause", "Pause"], ["cancelled", "Cancel", "Cancel schedule"]],
  paused: [["active", "Resume", "Resume"], ["cancelled", "Cancel", "Cancel schedule"]],
};
const EXPLAIN = {
  paused: "No occurrence runs until it is resumed; a run already started goes on.",
  active: "It goes on from its next occurrence; occurrences missed while paused do not run.",
  cancelled: "No more runs, ever. A pending run's transaction goes on (cancel it by its id).",
};

function trigger(t) {
  if (t.cron) return `cron ${t.cron}${t.timezone ? ` (${t.timezone})` : ""}`;
  if (t.interval_s) return `every ${t.interval_s} s`;
  if (t.at) return el("span", {}, "once at ", time(t.at));
  return JSON.stringify(t);
}

function action(a) {
  if (a.type === "dca_swap") {
    // A token's decimals are not known here: its amount stays in its smallest unit.
    const amount = a.token_in === "native" ? ether(a.amount_in) : `${a.amount_in} units of ${a.token_in}`;
    return `DCA swap ${amount} → ${a.token_out}`;
  }
  return `transaction to ${a.to ?? a.function ?? "—"}`;
}

// Why this page shows nothing, or null when the key may read schedules.
async function refusal(me) {
  if (!(await serverHas("/v1/schedules"))) {
    return "Schedules are not available on this server (it has no /v1/schedules).";
  }
  if (!can(me, "schedules")) return "This API key lacks the 'schedules' scope: schedules are not shown.";
  if (restricted(me)) {
    return "This API key is restricted to some wallets or chains; the schedules API shows every "
      + "wallet's schedules, so it refuses such a key (key_restricted). Use an unrestricted key.";
  }
  return null;
}

function buttons(schedule, act) {
  return (ACTIONS[schedule.status] || []).map(([status, label, confirm]) => el("button", {
    type: "button", class: status === "cancelled" ? "danger" : "",
    "aria-label": `${label} schedule ${schedule.id.slice(0, 8)}`,
    onclick: () => act(`${label} schedule ${schedule.id.slice(0, 8)}?`, EXPLAIN[status], confirm,
      () => (status === "cancelled" ? api.delete(`/v1/schedules/${schedule.id}`)
        : api.patch(`/v1/schedules/${schedule.id}`, { status }))),
  }, `${label}…`));
}

// Runs `show(body, act, refresh)` once the key may read schedules (which is the scope that
// also changes them), refreshed by polling.
function page(target, context, heading, show) {
  const error = el("p", { class: "error", role: "alert", hidden: true });
  const notice = el("p", { class: "notice", role: "status", "aria-live": "polite" });
  const body = el("div");
  let live = { stop: () => {}, refresh: () => {} };
  let stopped = false;
  const act = actor({ notice, onError: context.reportIn(error), refresh: () => live.refresh() });
  (async () => {
    const why = await refusal(context.me);
    if (stopped) return;
    if (why) {
      replace(target, heading, el("p", { class: "empty" }, why));
      return;
    }
    replace(target, heading, error, notice, body);
    live = watch(() => show(body, act, () => live.refresh()), {
      everyMs: 5000, onError: context.reportIn(error),
    });
  })();
  return () => {
    stopped = true;
    live.stop();
  };
}

export function renderList(target, context) {
  let pages = 1;
  return page(target, context, el("h1", {}, "Schedules"), async (body, act, refresh) => {
    const list = await api.pages("/v1/schedules", { limit: PAGE_SIZE }, pages);
    const headers = ["Id", "Status", "Wallet", "Chain", "Trigger", "Action", "Next run", "Runs",
      "Actions"];
    replace(body, table("Schedules in creation order", headers, list.items.map((s) => {
      const cells = [
        el("a", { href: `#/schedules/${s.id}`, class: "mono" }, s.id.slice(0, 8)),
        badge(s.status), el("span", { class: "mono", title: s.wallet }, s.wallet.slice(0, 8)),
        String(s.chain_id), trigger(s.trigger), action(s.action), time(s.next_run_at), String(s.runs),
      ];
      cells.push(el("div", { class: "actions" }, buttons(s, act)));
      return cells;
    }), "No schedule yet."), list.more ? el("button", {
      type: "button", class: "quiet",
      onclick: () => {
        pages += 1;
        refresh();
      },
    }, `Show ${PAGE_SIZE} more schedules`) : null);
  });
}

const RUNS = 100;

export function renderOne(target, context, id) {
  const heading = [el("p", {}, el("a", { href: "#/schedules" }, "← Schedules")),
    el("h1", {}, "Schedule ", el("span", { class: "mono" }, id))];
  return page(target, context, heading, async (body, act) => {
    const [s, runs] = await Promise.all([
      api.get(`/v1/schedules/${encodeURIComponent(id)}`),
      api.get(`/v1/schedules/${encodeURIComponent(id)}/runs`, { order: "desc", limit: RUNS }),
    ]);
    replace(body,
      el("dl", { class: "facts" },
        el("dt", {}, "Status"), el("dd", {}, badge(s.status)),
        el("dt", {}, "Wallet"), el("dd", { class: "mono" }, s.wallet),
        el("dt", {}, "Chain"), el("dd", {}, String(s.chain_id)),
        el("dt", {}, "Trigger"), el("dd", {}, trigger(s.trigger)),
        el("dt", {}, "Action"), el("dd", {}, action(s.action)),
        el("dt", {}, "Next run"), el("dd", {}, time(s.next_run_at)),
        el("dt", {}, "Runs"), el("dd", {}, `${s.runs}${s.max_runs ? ` of ${s.max_runs}` : ""}`)),
      el("div", { class: "actions" }, buttons(s, act)),
      el("section", { "aria-labelledby": "runs-title" },
        el("h2", { id: "runs-title" }, "Runs"),
        table(`Runs, newest first${runs.next_cursor ? ` (the last ${RUNS})` : ""}`,
          ["Scheduled for", "Outcome", "Transaction", "Reason"],
          runs.items.map((r) => [
            time(r.scheduled_for), badge(r.status),
            r.transaction_id ? el("a", { href: `#/transactions/${r.transaction_id}`, class: "mono" },
              r.transaction_id.slice(0, 8)) : "—",
            r.reason || "—",
          ]), "No run yet.")));
  });
}
