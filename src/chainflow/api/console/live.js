// Keeps a page's data fresh. With `events`, it reads GET /v1/events/stream and reloads the
// page when an event it cares about arrives (pages give it only a `load` function and a test
// on events); it polls meanwhile and whenever the stream is not open: before it opens, after a
// drop until it is back (resumed after the last event seen, with Last-Event-ID), and for good
// when the server refuses it (403 key_restricted, 404: no such route) or after 503
// too_many_streams until a later try gets one. The stream is read with fetch, because
// EventSource cannot send the Authorization header.

import { ApiError, session } from "/console/api.js";

const STREAM = "/v1/events/stream";
const RETRY_MS = [1000, 2000, 5000, 15000];
// A stream that sends nothing, not even its keep-alive comment (every 15 s by default), for
// this long is taken as dropped.
const SILENCE_MS = 45000;
// Loads made for events start at least this far apart (events can come by the hundred).
const GAP_MS = 1000;
// The polling interval, unless this tab set its own (sessionStorage "chainflow.pollMs"; the
// browser test sets it long, so that what changes on screen can only have come by the stream).
const pollMs = (everyMs) => Number(sessionStorage.getItem("chainflow.pollMs")) || everyMs;

// One SSE stream after the event `after` (null: from now): calls `onOpen()` at its first
// bytes, `onEvent(id, type, envelope)` for every event, `onEnd(error)` when it ends (error:
// an ApiError when it was refused; null when the server closed it).
function readStream(after, { onOpen, onEvent, onEnd }) {
  const abort = new AbortController();
  let silence = null;
  const hush = () => {
    clearTimeout(silence);
    silence = setTimeout(() => abort.abort(), SILENCE_MS);
  };
  const headers = { Accept: "text/event-stream", Authorization: `Bearer ${session.key()}` };
  if (after !== null) headers["Last-Event-ID"] = after;
  (async () => {
    try {
      const response = await fetch(STREAM, {
        headers, credentials: "omit", cache: "no-store", signal: abort.signal,
      });
      if (!response.ok) {
        const text = await response.text();
        throw new ApiError(response.status, text ? JSON.parse(text) : {},
          response.headers.get("Retry-After"));
      }
      hush();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let opened = false;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        hush();
        // Open at its first bytes (": stream open"), sent once the server follows new events:
        // the headers can come before that, and a load made then could miss an event.
        if (!opened) {
          opened = true;
          onOpen();
        }
        buffer = (buffer + value).replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          dispatch(buffer.slice(0, end), onEvent);
          buffer = buffer.slice(end + 2);
        }
      }
      onEnd(null);
    } catch (error) {
      onEnd(abort.signal.aborted && !silence ? null : error);
    } finally {
      clearTimeout(silence);
    }
  })();
  return () => {
    clearTimeout(silence);
    silence = null;
    abort.abort();
  };
}

function dispatch(block, onEvent) {
  let id = null;
  let type = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;  // a comment: "stream open", "keep-alive"
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (name === "id") id = value;
    else if (name === "event") type = value;
    else if (name === "data") data.push(value);
  }
  if (data.length) onEvent(id, type, JSON.parse(data.join("\n")));
}

// Runs `load` now, then again on each event `events(type, data)` takes (when the server
// streams them to this key), and every `everyMs` while it does not; while it does, every
// `liveMs` if given (for what no event reports: chain heads, balances). `status(text)` hears
// how.
export function watch(load, { everyMs: defaultMs = 5000, liveMs: defaultLiveMs = null,
  onError = () => {}, events = null, status = () => {} } = {}) {
  const everyMs = pollMs(defaultMs);
  const liveMs = defaultLiveMs && pollMs(defaultLiveMs);
  let timer = null;
  let inflight = null;
  let again = false;
  let soonTimer = null;
  let lastStart = 0;
  let stopped = false;
  let streaming = false;
  let closeStream = () => {};
  let lastId = null;
  let retries = 0;

  const schedule = () => {
    const waitMs = streaming ? liveMs : everyMs;
    if (!stopped && waitMs && timer === null && document.visibilityState !== "hidden") {
      timer = setTimeout(run, waitMs);
    }
  };
  // Events that arrive while a load runs make one more load after it: a burst of events
  // costs two loads, GAP_MS apart.
  const soon = () => {
    if (soonTimer !== null) return;
    soonTimer = setTimeout(() => {
      soonTimer = null;
      run();
    }, Math.max(0, lastStart + GAP_MS - Date.now()));
  };
  function run() {
    clearTimeout(timer);
    timer = null;
    if (inflight) {
      again = true;
      return inflight;
    }
    lastStart = Date.now();
    inflight = (async () => {
      try {
        await load();
      } catch (error) {
        onError(error);
      } finally {
        inflight = null;
        if (again && !stopped) {
          again = false;
          soon();
        } else {
          schedule();
        }
      }
    })();
    return inflight;
  }

  const fallBack = (why) => {
    streaming = false;
    status(why);
    schedule();
  };
  function connect() {
    closeStream = readStream(lastId, {
      onOpen: () => {
        streaming = true;
        retries = 0;
        status("live");
        run();  // what changed between the last load and the stream's start
      },
      onEvent: (id, type, data) => {
        lastId = id;
        if (events(type, data)) soon();
      },
      onEnd: (error) => {
        if (stopped) return;
        const refused = error instanceof ApiError;
        if (refused && error.status === 401) {
          onError(error);
          return;
        }
        if (refused && error.status !== 503) {
          fallBack(`polling every ${everyMs / 1000} s (the event stream was refused: `
            + `${error.code || error.status})`);
          return;
        }
        const waitMs = refused && error.retryAfterS ? error.retryAfterS * 1000
          : RETRY_MS[Math.min(retries, RETRY_MS.length - 1)];
        retries += 1;
        fallBack(`polling every ${everyMs / 1000} s until the event stream is back`);
        setTimeout(() => {
          if (!stopped) connect();
        }, waitMs);
      },
    });
  }

  const wake = () => {
    if (document.visibilityState === "visible" && timer === null && !inflight) run();
  };
  document.addEventListener("visibilitychange", wake);
  run();
  if (events) connect();
  else status(`refreshes every ${everyMs / 1000} s`);
  return {
    refresh: run,
    stop() {
      stopped = true;
      clearTimeout(timer);
      clearTimeout(soonTimer);
      closeStream();
      document.removeEventListener("visibilitychange", wake);
    },
  };
}
