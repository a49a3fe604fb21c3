// The console's only way to the server: the public /v1 API, with the pasted key as a Bearer
// token. The key lives in this tab's sessionStorage; it is never put in a URL or a cookie.

const STORAGE_KEY = "chainflow.apiKey";

export class ApiError extends Error {
  constructor(status, problem, retryAfter = null) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || "";
    this.problem = problem;
    this.retryAfterS = Number(retryAfter) || 0;
  }
}

export const session = {
  key: () => sessionStorage.getItem(STORAGE_KEY),
  remember: (key) => sessionStorage.setItem(STORAGE_KEY, key),
  forget: () => sessionStorage.removeItem(STORAGE_KEY),
};

async function request(method, path, { body, query, key = session.key() } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json", Authorization: `Bearer ${key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data || {});
  return data;
}

export const api = {
  get: (path, query) => request("GET", path, { query }),
  post: (path, body) => request("POST", path, { body: body ?? {} }),
  patch: (path, body) => request("PATCH", path, { body }),
  put: (path) => request("PUT", path),
  delete: (path) => request("DELETE", path),
  me: (key) => request("GET", "/v1/me", { key }),
  // The first `count` pages of a list (cursor pagination): {items, more}, `more` when the
  // list goes on after them.
  async pages(path, query, count = 1) {
    const items = [];
    let cursor = null;
    for (let loaded = 0; loaded < count; loaded += 1) {
      const page = await request("GET", path, { query: { ...query, cursor } });
      items.push(...page.items);
      cursor = page.next_cursor;
      if (!cursor) break;
    }
    return { items, more: Boolean(cursor) };
  },
};

export const PAGE_SIZE = 500;  // the API's largest `limit`

// Whether the server has an API route (from its OpenAPI document, read once): the pages of
// features a server may not have yet ask this first, so that they make no failing request.
let openapiPaths = null;

export async function serverHas(path) {
  if (openapiPaths === null) {
    try {
      const response = await fetch("/openapi.json", { credentials: "omit" });
      openapiPaths = response.ok ? Object.keys((await response.json()).paths || {}) : [];
    } catch {
      openapiPaths = [];
    }
  }
  return openapiPaths.length === 0 || openapiPaths.includes(path);
}

// Whether the key is limited to some wallets or chains (issue 21): routes that show every
// wallet (lanes, counts, webhooks, schedules) refuse it with 403 key_restricted.
export function restricted(me) {
  return Boolean(me.wallet_ids || me.chain_ids);
}

// Scopes of the signed-in key, as GET /v1/me gave them.
export function can(me, scope) {
  return me.scopes.includes("admin") || me.scopes.includes(scope);
}
