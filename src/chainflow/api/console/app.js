// The console's shell: sign-in with a pasted key, navigation between pages (#/name/...), and
// one page at a time, each stopped (its polling ended) when another is opened.

import { ApiError, api, restricted, serverHas, session } from "/console/api.js";
import { el, replace } from "/console/dom.js";
import * as overview from "/console/pages/overview.js";
import * as transactions from "/console/pages/transactions.js";
import * as transaction from "/console/pages/transaction.js";
import * as wallets from "/console/pages/wallets.js";
import * as optional from "/console/pages/optional.js";
import * as schedules from "/console/pages/schedules.js";

const PAGES = {
  overview: overview.render,
  transactions: (target, context, [id]) =>
    id ? transaction.render(target, context, id) : transactions.render(target, context),
  wallets: wallets.render,
  webhooks: (target, context) => optional.render(target, context, optional.WEBHOOKS),
  schedules: (target, context, [id]) =>
    id ? schedules.renderOne(target, context, id) : schedules.renderList(target, context),
};

const $ = (id) => document.getElementById(id);
let me = null;
let streamable = false;
let stopPage = () => {};

function describe(error) {
  if (error instanceof ApiError && error.status === 401) {
    return "This API key was refused (invalid_api_key): check that it was copied whole and "
      + "has not been revoked.";
  }
  if (error instanceof ApiError) return `${error.message} (${error.code || error.status})`;
  return `The server could not be reached: ${error.message}`;
}

function showSignIn(message) {
  stopPage();
  me = null;
  $("nav").hidden = true;
  $("whoami").hidden = true;
  $("signout").hidden = true;
  $("page").hidden = true;
  $("signin").hidden = false;
  $("signin-error").hidden = !message;
  $("signin-error").textContent = message || "";
  $("key").focus();
}

async function signIn(key) {
  try {
    me = await api.me(key);
  } catch (error) {
    session.forget();
    showSignIn(describe(error));
    return;
  }
  session.remember(key);
  // A restricted key's pages poll (the stream would send it its own events only; issue 16).
  streamable = !restricted(me) && await serverHas("/v1/events/stream");
  $("signin").hidden = true;
  $("nav").hidden = false;
  $("signout").hidden = false;
  const readOnly = !me.scopes.some((s) => s !== "read");
  $("whoami").textContent = `${me.name || me.prefix} · ${me.scopes.join(", ")}`
    + (readOnly ? " · read-only" : "") + (restricted(me) ? " · restricted" : "");
  $("whoami").hidden = false;
  $("page").hidden = false;
  route();
  // Keyboard users land on the navigation, not on the hidden sign-in form.
  document.querySelector("#nav a[aria-current='page']").focus();
}

function route() {
  if (!me) return;
  const [path, query = ""] = window.location.hash.replace(/^#\/?/, "").split("?");
  const [name, ...rest] = path.split("/");
  const page = PAGES[name] ? name : "overview";
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  stopPage();
  const target = $("page");
  replace(target, el("p", { class: "loading" }, "Loading…"));
  const onError = (error) => {
    if (error instanceof ApiError && error.status === 401) showSignIn(describe(error));
  };
  const context = {
    me,
    streamable,
    onError,
    describe,
    // An error handler that shows the failure in `element` (a key refused meanwhile: sign-in).
    reportIn: (element) => (error) => {
      element.textContent = describe(error);
      element.hidden = false;
      onError(error);
    },
    params: new URLSearchParams(query),
  };
  stopPage = PAGES[page](target, context, rest.map(decodeURIComponent)) || (() => {});
}

function start() {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    $("key").value = "";
    signIn(key);
  });
  $("signout").addEventListener("click", () => {
    session.forget();
    showSignIn("");
  });
  window.addEventListener("hashchange", () => {
    route();
    $("main").focus();
  });
  const key = session.key();
  if (key) signIn(key);
  else showSignIn("");
}

start();
