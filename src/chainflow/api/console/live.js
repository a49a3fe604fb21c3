// Keeps a page's data fresh. Today it polls; when the server has the event stream
// (GET /v1/events/stream), `watch` can refresh on its events instead, and the pages do not
// change: they only give it a `load` function.

export function watch(load, { everyMs = 3000, onError = () => {} } = {}) {
  let timer = null;
  let inflight = null;
  let stopped = false;
  const schedule = () => {
    if (!stopped && timer === null && document.visibilityState !== "hidden") {
      timer = setTimeout(run, everyMs);
    }
  };
  function run() {
    if (inflight) return inflight;
    timer = null;
    inflight = (async () => {
      try {
        await load();
      } catch (error) {
        onError(error);
      } finally {
        inflight = null;
        schedule();
      }
    })();
    return inflight;
  }
  const wake = () => {
    if (document.visibilityState === "visible" && timer === null && !inflight) run();
  };
  document.addEventListener("visibilitychange", wake);
  run();
  return {
    refresh() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      return run();
    },
    stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      document.removeEventListener("visibilitychange", wake);
    },
  };
}
