// bucketreel viewer: what both players share (player.js for one recording, day-player.js for a
// day), loaded before either. The broker's API with its errors, a segment's loading, times in
// the page's zone, and the keys.
"use strict";

window.bucketreelViewer = (function () {
  // The page's zone (the organisation's, or the browser's: data-zone on <body>).
  const zone = document.body.dataset.zone || "UTC";
  let zoned = null;
  try {
    zoned = new Intl.DateTimeFormat("en-GB", {
      timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
    });
  } catch (e) {
    zoned = null;
  }

  function utc(wall) {
    return new Date(wall).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  // "YYYY-MM-DD HH:MM:SS Zone/Name" in the page's zone (UTC if this browser cannot).
  function local(wall) {
    if (zoned === null) return utc(wall);
    const p = {};
    for (const part of zoned.formatToParts(new Date(wall))) p[part.type] = part.value;
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${zone}`;
  }

  // A call of the broker's API: its JSON body, or an Error with the broker's message; a
  // signed-out session goes to the sign-in page.
  async function api(path, options) {
    const reply = await fetch(path, { credentials: "same-origin", cache: "no-store", ...options });
    if (reply.status === 401) {
      window.location.assign("/signin");
      throw new Error("signed out");
    }
    const body = await reply.json().catch(() => ({}));
    if (!reply.ok) throw new Error(body.message || "the broker refused (" + reply.status + ")");
    return body;
  }

  // A segment's short-lived view URL (an audited view), asked just before it plays.
  async function viewUrl(recording, seq, csrf) {
    const path = "/api/v1/recordings/" + encodeURIComponent(recording) +
      "/segments/" + seq + "/view";
    const body = await api(path, { method: "POST", headers: { "X-CSRF-Token": csrf } });
    return body.url;
  }

  // Resolves once `video` has fired `ready` for its new src, rejects on its error.
  function loaded(video, ready) {
    return new Promise((resolve, reject) => {
      const ok = () => { done(); resolve(); };
      const bad = () => { done(); reject(new Error("the segment could not be loaded")); };
      const done = () => {
        video.removeEventListener(ready, ok);
        video.removeEventListener("error", bad);
      };
      video.addEventListener(ready, ok);
      video.addEventListener("error", bad);
    });
  }

  // The players' keys: Space play/pause, ← → 5 s (Shift: 30 s), 1–8 speed, and `extra`
  // ({key: handler}); not while typing in a field other than the seek bar.
  function keys(seek, { toggle, seekBy, setRate, extra = {} }) {
    document.addEventListener("keydown", (event) => {
      if (event.target instanceof HTMLInputElement && event.target !== seek) return;
      if (event.target instanceof HTMLSelectElement) return;
      const step = event.shiftKey ? 30000 : 5000;
      if (event.key === " ") {
        event.preventDefault();
        toggle();
      } else if (event.key === "ArrowRight") {
        event.preventDefault();
        seekBy(step);
      } else if (event.key === "ArrowLeft") {
        event.preventDefault();
        seekBy(-step);
      } else if (/^[1-8]$/.test(event.key)) {
        setRate(Number(event.key));
      } else if (extra[event.key]) {
        extra[event.key]();
      }
    });
  }

  return { zone, utc, local, api, viewUrl, loaded, keys };
})();
