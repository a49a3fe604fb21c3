// Pages of features a server may not have yet (webhooks): they light up when the
// API has the route, and say so plainly when it does not.

import { ApiError, api, can, restricted, serverHas } from "/console/api.js";
import { badge, el, replace, table, time } from "/console/dom.js";
import { watch } from "/console/live.js";

export const WEBHOOKS = {
  title: "Webhooks",
  path: "/v1/webhooks",
  scope: "webhooks",
  columns: [["Id", "id"], ["URL", "url"], ["Events", "events"], ["Enabled", "enabled"],
    ["Created", "created_at"]],
};

function cell(name, value) {
  if (value === undefined || value === null) return "—";
  if (name === "status") return badge(String(value));
  if (name.endsWith("_at")) return time(value);
  if (Array.isArray(value)) return value.join(", ");
  return String(value);
}

function lacksScope(target, feature) {
  replace(target, el("h1", {}, feature.title),
    el("p", { class: "empty" }, `This API key lacks the '${feature.scope}' scope: ${feature.title.toLowerCase()} are not shown.`));
}

function unavailable(target, feature) {
  replace(target, el("h1", {}, feature.title),
    el("p", { class: "empty" }, `${feature.title} are not available on this server (it has no ${feature.path}).`));
}

export function render(target, context, feature) {
  let live = { stop: () => {} };
  let stopped = false;
  (async () => {
    if (!(await serverHas(feature.path))) {
      unavailable(target, feature);
      return;
    }
    if (stopped) return;
    if (!can(context.me, feature.scope)) {  // no request the server would refuse
      lacksScope(target, feature);
      return;
    }
    if (restricted(context.me)) {
      replace(target, el("h1", {}, feature.title), el("p", { class: "empty" },
        `This API key is restricted to some wallets or chains; ${feature.title.toLowerCase()} `
        + "show every wallet's events, so the server refuses them to such a key "
        + "(key_restricted). Use an unrestricted key."));
      return;
    }
    const body = el("div");
    const error = el("p", { class: "error", role: "alert", hidden: true });
    replace(target, el("h1", {}, feature.title), error, body);
    live = watch(async () => {
      const page = await api.get(feature.path, { limit: 100 });
      replace(body, table(feature.title, feature.columns.map(([h]) => h),
        page.items.map((item) => feature.columns.map(([, name]) => cell(name, item[name])))));
    }, {
      everyMs: 5000,
      onError: (e) => {
        if (e instanceof ApiError && e.status === 404) {
          live.stop();
          unavailable(target, feature);
          return;
        }
        error.textContent = context.describe(e);
        error.hidden = false;
        context.onError(e);
      },
    });
  })();
  return () => {
    stopped = true;
    live.stop();
  };
}
