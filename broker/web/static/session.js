// bucketreel session keeper, on every signed-in page. While the page is open it refreshes the
// browser session shortly before the access cookie expires: POST /api/v1/auth/refresh sends the
// HttpOnly refresh cookie (only that route ever receives it) with the session's CSRF token, and
// the broker answers with new cookies and the new lifetime. When the broker refuses (idle for too
// long, the session's absolute lifetime over, signed out, a refresh token replayed), the page
// goes to /signin. No token is ever readable here; the page knows only the CSRF token and how
// many seconds the access cookie has left (data attributes of the top bar).
//
// Tabs of one browser share one cookie jar, hence one session: a refresh is done under a Web
// Lock, and the new expiry is kept in localStorage, so a second tab adopts it instead of
// presenting the refresh token a first tab has just used (a replay, which ends the session).
"use strict";

(function () {
  const root = document.getElementById("session");
  if (!root || !root.dataset.csrf) return;
  const csrf = root.dataset.csrf;
  const STORE = "bucketreel.session.expires"; // ms since the epoch, on this browser's clock
  const LOCK = "bucketreel-session-refresh";
  const SLACK = 1000; // a timer may fire a little early or late
  const RETRY_MIN = 2000;
  const RETRY_MAX = 30000;

  let expires = 0; // when the access cookie expires, on this browser's clock
  let lead = 0; // refresh this long before that
  let timer = 0;
  let retry = RETRY_MIN;
  let leaving = false;

  function learn(at) {
    expires = at;
    // A quarter of the lifetime left, between half a second and a minute.
    lead = Math.min(60000, Math.max(500, (at - Date.now()) / 4));
  }

  function stored() {
    try {
      return Number(window.localStorage.getItem(STORE)) || 0;
    } catch (error) {
      return 0; // storage disabled: the lock alone keeps tabs apart
    }
  }

  function store(at) {
    try {
      window.localStorage.setItem(STORE, String(at));
    } catch (error) {
      // storage disabled
    }
  }

  function schedule(delay) {
    window.clearTimeout(timer);
    const wait = delay === undefined ? expires - lead - Date.now() : delay;
    timer = window.setTimeout(() => { keep().catch(() => later()); }, Math.max(0, wait));
  }

  function later() {
    schedule(retry);
    retry = Math.min(RETRY_MAX, retry * 2);
  }

  function signIn() {
    if (leaving) return;
    leaving = true;
    window.clearTimeout(timer);
    window.location.assign("/signin");
  }

  async function refresh() {
    const other = stored();
    if (other > expires + SLACK) learn(other); // another tab has refreshed already
    if (expires - Date.now() > lead + SLACK) {
      schedule();
      return;
    }
    let reply;
    try {
      reply = await fetch("/api/v1/auth/refresh", {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: { "X-CSRF-Token": csrf },
      });
    } catch (error) {
      later(); // the network: the refresh cookie may still be good when it is back
      return;
    }
    if (reply.status === 401 || reply.status === 403) {
      signIn();
      return;
    }
    if (!reply.ok) {
      later();
      return;
    }
    const body = await reply.json();
    const seconds = Number(body.expires_in);
    if (!(seconds > 0)) {
      signIn(); // the session's absolute end: nothing left to refresh
      return;
    }
    learn(Date.now() + seconds * 1000);
    store(expires);
    retry = RETRY_MIN;
    schedule();
  }

  function keep() {
    if (leaving) return Promise.resolve();
    if (navigator.locks && navigator.locks.request) {
      return navigator.locks.request(LOCK, refresh);
    }
    return refresh();
  }

  function wake() {
    // Timers of a hidden or frozen page run late: check as soon as it is seen again.
    if (document.visibilityState === "visible" && expires - Date.now() <= lead + SLACK) {
      keep().catch(() => later());
    }
  }

  learn(Date.now() + Number(root.dataset.expiresIn || 0) * 1000);
  const other = stored();
  if (other > expires + SLACK) learn(other);
  schedule();
  document.addEventListener("visibilitychange", wake);
  window.addEventListener("pageshow", wake);
  window.addEventListener("storage", (event) => {
    const at = Number(event.newValue);
    if (event.key === STORE && at > expires + SLACK) {
      learn(at);
      schedule();
    }
  });
  // Signing out ends the session for every tab: forget its expiry.
  document.querySelectorAll("form[action='/logout']").forEach((form) => {
    form.addEventListener("submit", () => {
      try {
        window.localStorage.removeItem(STORE);
      } catch (error) {
        // storage disabled
      }
    });
  });
})();
