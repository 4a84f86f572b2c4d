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

  // A segment's codec (RFC 6381, as its agent declared it; "" from an older agent, whose
  // segments are all H.264) in words, and whether this browser says it plays it.
  const CODEC_NAMES = { avc1: "H.264", av01: "AV1", hvc1: "HEVC", hev1: "HEVC", vp09: "VP9" };

  function codecName(codec) {
    return CODEC_NAMES[(codec || "avc1").slice(0, 4)] || codec;
  }

  function playable(video, codec) {
    if (!codec) return true; // H.264: every browser the pages support plays it
    return video.canPlayType('video/mp4; codecs="' + codec + '"') !== "";
  }

  // What a viewer whose browser cannot play a segment is told to do instead.
  function cannotPlay(codec) {
    const name = codecName(codec);
    const advice = name === "AV1"
      ? "open it in Chrome, Edge or Firefox (Safari plays AV1 only on devices with AV1 " +
        "hardware), or ask your admin to set the recording quality to standard (H.264, which " +
        "every browser plays) for new recordings."
      : "open it in Chrome, Edge or Firefox, or ask your admin.";
    return "This recording uses " + name + ", which this browser cannot play: " + advice;
  }

  // Resolves once `video` has fired `ready` for its new src, rejects on its error (a picture
  // the browser cannot decode is said so, with what to do, never left as a black box).
  function loaded(video, ready, codec) {
    return new Promise((resolve, reject) => {
      const ok = () => { done(); resolve(); };
      const bad = () => {
        done();
        const code = video.error ? video.error.code : 0;
        const undecodable = code === MediaError.MEDIA_ERR_DECODE ||
          code === MediaError.MEDIA_ERR_SRC_NOT_SUPPORTED;
        const advice = codec ? " " + cannotPlay(codec)
          : ": open it in Chrome, Edge or Firefox, or ask your admin.";
        reject(new Error(undecodable
          ? "This segment could not be played in this browser" + (codec ? "." : "") + advice
          : "the segment could not be loaded"));
      };
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

  return { zone, utc, local, api, viewUrl, loaded, keys, playable, cannotPlay };
})();
