// bucketreel day player: one <video> plays every recording of a person's day back to back as
// one timeline of recorded time. Between segments that do not touch, a gap: a marker on the
// bar, skipped in playback with a word of why ("Skipped 14 min: idle").
//
// The day (recordings, verified segments, gaps and reasons) comes from the broker's API route
// (data-api), polled while a recording is live so new verified segments join the end. Each
// segment's URL is asked of the broker just before that segment is needed, never all up
// front; each asking is an audited view. The still shown before Play is the first segment to
// play, loaded paused at the starting moment: minting its URL is a view like any other.
"use strict";

(function () {
  const root = document.getElementById("player");
  if (!root || !root.classList.contains("day-player")) return;
  const viewer = window.bucketreelViewer;
  const { local, utc, api } = viewer;
  const $ = (id) => document.getElementById(id);
  const video = $("video");
  const seek = $("seek");
  const clock = $("clock");
  const elapsed = $("elapsed");
  const playButton = $("play");
  const speed = $("speed");
  const status = $("status");
  const liveBadge = $("live");
  const where = $("where");
  const markersSvg = $("markers");
  const fullButton = $("fullscreen");
  const csrf = root.dataset.csrf;
  const JOIN_MS = 2000; // segments closer than this play as one (broker.recordings.timeline)
  const POLL_MS = 4000;
  const NS = "http://www.w3.org/2000/svg";

  let segs = []; // {rec, seq, start, ms, offset, key}, in time order
  let gaps = []; // the API's gaps: {start, end, label}
  let markers = []; // before segs[index]: {index, from, to, label, kind}
  let total = 0;
  let live = false;
  let current = -1;
  let wantPlaying = false;
  let waiting = false; // at the live end, for the next segment
  let rate = 1;
  let loads = 0;
  let dragging = false;
  let retries = 0;
  const minted = []; // "recording/seq" of each view URL asked for, in order

  const say = (text) => { status.textContent = text; };
  const report = (error) => say(error.message);

  function human(ms) {
    const s = Math.round(ms / 1000);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (h) return h + " h " + m + " min";
    if (m) return s % 60 ? m + " min " + (s % 60) + " s" : m + " min";
    return s + " s";
  }

  function span(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const h = Math.floor(s / 3600);
    const mm = String(Math.floor((s % 3600) / 60));
    const ss = String(s % 60).padStart(2, "0");
    return h ? h + ":" + mm.padStart(2, "0") + ":" + ss : mm + ":" + ss;
  }

  const hms = (wall) => local(wall).slice(11, 19);

  async function viewUrl(segment) {
    minted.push(segment.key);
    root.dataset.minted = minted.join(" ");
    return viewer.viewUrl(segment.rec, segment.seq, csrf);
  }

  function rebuild(day) {
    const playing = current >= 0 ? segs[current].key : null;
    const list = [];
    for (const r of day.recordings) {
      for (const s of r.segments) {
        list.push({
          rec: r.recording_id, seq: s.seq, start: Date.parse(s.started_at), ms: s.duration_ms,
          key: r.recording_id + "/" + s.seq, codec: s.codec || "",
        });
      }
    }
    list.sort((a, b) => a.start - b.start || a.seq - b.seq);
    gaps = day.gaps.map((g) => ({
      start: Date.parse(g.start), end: Date.parse(g.end), label: g.label, kind: g.kind,
    }));
    markers = [];
    total = 0;
    list.forEach((s, i) => {
      s.offset = total;
      total += s.ms;
      if (i === 0) return;
      const from = list[i - 1].start + list[i - 1].ms;
      if (s.start - from <= JOIN_MS) return;
      let best = null;
      let most = 0;
      for (const g of gaps) {
        const overlap = Math.min(g.end, s.start) - Math.max(g.start, from);
        if (overlap > most) { best = g; most = overlap; }
      }
      markers.push({
        index: i, from, to: s.start, label: best ? best.label : "no recording",
        kind: best ? best.kind : "silent",
      });
    });
    segs = list;
    current = playing === null ? -1 : segs.findIndex((s) => s.key === playing);
    live = day.live;
    liveBadge.hidden = !live;
    root.dataset.live = String(live);
    root.dataset.segments = String(segs.length);
    seek.max = String(total);
    drawMarkers();
  }

  function drawMarkers() {
    markersSvg.replaceChildren();
    for (const m of markers) {
      const rect = document.createElementNS(NS, "rect");
      rect.setAttribute("x", String(Math.max(0, (segs[m.index].offset / total) * 1000 - 1.5)));
      rect.setAttribute("y", "0");
      rect.setAttribute("width", "3");
      rect.setAttribute("height", "10");
      rect.setAttribute("class", "marker " + m.kind);
      const title = document.createElementNS(NS, "title");
      title.textContent = hms(m.from) + " – " + hms(m.to) + ": " + m.label;
      rect.append(title);
      markersSvg.append(rect);
    }
  }

  async function load(index, within, note) {
    const ticket = ++loads;
    const segment = segs[index];
    if (!viewer.playable(video, segment.codec)) { // no view minted for what cannot play
      if (wantPlaying) pause();
      root.dataset.unplayable = segment.codec;
      throw new Error(viewer.cannotPlay(segment.codec));
    }
    say("Loading " + hms(segment.start) + "…");
    const url = await viewUrl(segment);
    if (ticket !== loads) return;
    current = index;
    root.dataset.recording = segment.rec;
    root.dataset.seq = String(segment.seq);
    if (note) root.dataset.note = note; // with the segment it belongs to, not after its load
    const ready = viewer.loaded(video, "loadeddata", segment.codec);
    video.src = url;
    await ready;
    if (ticket !== loads) return;
    video.currentTime = Math.max(0, Math.min(within, video.duration - 0.05));
    video.playbackRate = rate;
    say(note || "");
    show();
    if (wantPlaying) await video.play();
  }

  function markerBefore(index) {
    return markers.find((m) => m.index === index) || null;
  }

  function advance() {
    const next = current + 1;
    if (next < segs.length) {
      const m = markerBefore(next);
      const note = m ? "Skipped " + human(m.to - m.from) + ": " + m.label : "";
      load(next, 0, note).catch(report);
    } else if (live) {
      waiting = true;
      say("Live: waiting for the next segment…");
    } else {
      pause();
      say("End of the day's recordings.");
    }
  }

  function indexAt(offset) {
    for (let i = segs.length - 1; i >= 0; i--) {
      if (offset >= segs[i].offset) return i;
    }
    return 0;
  }

  // Where a wall-clock moment plays: its segment and the seconds into it; in a gap, the
  // next segment's start (and the gap, to say so).
  function placeOf(wall) {
    let i = -1; // the last segment started by then (segments may touch or overlap by a frame)
    for (let k = 0; k < segs.length; k++) if (segs[k].start <= wall) i = k;
    if (i < 0) return { index: 0, within: 0, gap: null };
    const s = segs[i];
    if (wall < s.start + s.ms) return { index: i, within: (wall - s.start) / 1000, gap: null };
    if (i + 1 < segs.length) return { index: i + 1, within: 0, gap: markerBefore(i + 1) };
    return { index: i, within: s.ms / 1000, gap: null };
  }

  function seekTo(offset) {
    if (!segs.length) return;
    offset = Math.max(0, Math.min(offset, total - 1));
    const index = indexAt(offset);
    const within = (offset - segs[index].offset) / 1000;
    waiting = false;
    if (index === current && video.readyState > 0) {
      video.currentTime = Math.min(within, video.duration - 0.05);
      show();
    } else {
      load(index, within).catch(report);
    }
  }

  function position() {
    return current < 0 ? 0 : segs[current].offset + video.currentTime * 1000;
  }

  function show() {
    if (current < 0) return;
    const ms = position();
    const wall = segs[current].start + video.currentTime * 1000;
    root.dataset.position = String(Math.round(ms));
    root.dataset.wall = String(Math.round(wall));
    if (!dragging) seek.value = String(ms);
    elapsed.textContent = span(ms) + " / " + span(total);
    clock.textContent = local(wall);
    clock.title = utc(wall);
    where.textContent = "Recording from " + hms(firstOf(current).start);
  }

  function firstOf(index) {
    // The first segment of the day of this segment's recording.
    let i = index;
    while (i > 0 && segs[i - 1].rec === segs[index].rec) i--;
    return segs[i];
  }

  async function play() {
    wantPlaying = true;
    playButton.textContent = "Pause";
    if (current < 0) await load(0, 0);
    else await video.play();
  }

  function pause() {
    wantPlaying = false;
    playButton.textContent = "Play";
    video.pause();
    if (current >= 0) { // a reload (or coming back) starts here again
      const url = new URL(window.location.href);
      url.searchParams.set("at", new Date(Number(root.dataset.wall)).toISOString());
      history.replaceState(history.state, "", url);
    }
  }

  function toggle() {
    if (wantPlaying) pause();
    else play().catch(report);
  }

  function setRate(value) {
    rate = Math.max(1, Math.min(8, value));
    video.playbackRate = rate;
    speed.value = String(rate);
  }

  function toggleFullscreen() {
    if (document.fullscreenElement) document.exitFullscreen().catch(report);
    else root.requestFullscreen().catch(report);
  }

  async function poll() {
    try {
      rebuild(await api(root.dataset.api));
      if (waiting && current + 1 < segs.length) {
        waiting = false;
        advance();
      }
    } catch (error) {
      report(error);
    }
    if (live) window.setTimeout(poll, POLL_MS);
  }

  video.addEventListener("timeupdate", show);
  video.addEventListener("seeked", show);
  video.addEventListener("playing", () => { retries = 0; });
  video.addEventListener("ended", advance);
  video.addEventListener("error", () => {
    // An expired URL (a long pause, or the still waited long) or a rotated key: once more.
    if (current < 0 || retries > 0) return;
    retries += 1;
    load(current, video.currentTime || 0).catch(report);
  });
  playButton.addEventListener("click", toggle);
  fullButton.addEventListener("click", toggleFullscreen);
  document.addEventListener("fullscreenchange", () => {
    const full = document.fullscreenElement === root;
    root.classList.toggle("full", full);
    fullButton.textContent = full ? "Exit fullscreen" : "Fullscreen";
  });
  speed.addEventListener("change", () => setRate(Number(speed.value)));
  seek.addEventListener("input", () => { dragging = true; });
  seek.addEventListener("change", () => {
    dragging = false;
    seekTo(Number(seek.value));
  });
  viewer.keys(seek, {
    toggle, setRate, seekBy: (ms) => seekTo(position() + ms),
    extra: { f: toggleFullscreen, F: toggleFullscreen },
  });

  async function open() {
    rebuild(await api(root.dataset.api));
    if (live) window.setTimeout(poll, POLL_MS);
    if (!segs.length) {
      say(live ? "Live: waiting for the first segment…" : "Nothing was recorded this day.");
      waiting = live;
      return;
    }
    const asked = Date.parse(root.dataset.at || "");
    const place = Number.isNaN(asked) ? { index: 0, within: 0, gap: null } : placeOf(asked);
    const from = segs[place.index].start + place.within * 1000;
    let note = "Ready at " + hms(from) + ": press Play.";
    if (place.gap) {
      note = "Nothing recorded at " + hms(asked) + " (" + place.gap.label + "). " + note;
    }
    await load(place.index, place.within, note); // the still before Play
  }

  open().catch(report);
})();
