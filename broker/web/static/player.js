// bucketreel player: one <video> plays a recording's segments back to back as one timeline.
// Each segment's URL is asked of the broker just before that segment is needed (never all up
// front); it goes straight into video.src and is never logged or kept anywhere else.
"use strict";

(function () {
  const root = document.getElementById("player");
  if (!root || root.classList.contains("day-player")) return;
  const viewer = window.bucketreelViewer;
  const video = document.getElementById("video");
  const seek = document.getElementById("seek");
  const clock = document.getElementById("clock");
  const playButton = document.getElementById("play");
  const speed = document.getElementById("speed");
  const status = document.getElementById("status");
  const recording = root.dataset.recording;
  const csrf = root.dataset.csrf;

  const segments = Array.from(document.querySelectorAll("#segments li[data-seq]")).map(
    (li) => ({
      seq: Number(li.dataset.seq),
      start: Date.parse(li.dataset.start),
      ms: Number(li.dataset.durationMs),
      codec: li.dataset.codec || "",
    })
  );
  let total = 0;
  for (const s of segments) {
    s.offset = total;
    total += s.ms;
  }
  seek.max = String(total);

  let current = -1; // index of the segment in video.src
  let wantPlaying = false;
  let rate = 1;
  let loads = 0; // increases on each load, so a stale load gives way to a newer one
  let dragging = false;
  let retries = 0;

  function say(text) {
    status.textContent = text;
  }


  async function load(index, within) {
    const ticket = ++loads;
    const segment = segments[index];
    if (!viewer.playable(video, segment.codec)) { // no view minted for what cannot play
      pause();
      root.dataset.unplayable = segment.codec;
      throw new Error(viewer.cannotPlay(segment.codec));
    }
    say("Loading segment " + (index + 1) + " of " + segments.length + "…");
    const url = await viewer.viewUrl(recording, segment.seq, csrf);
    if (ticket !== loads) return;
    current = index;
    root.dataset.seq = String(segment.seq);
    const ready = viewer.loaded(video, "loadedmetadata", segment.codec);
    video.src = url;
    await ready;
    if (ticket !== loads) return;
    video.currentTime = Math.max(0, Math.min(within, video.duration - 0.05));
    video.playbackRate = rate;
    say("");
    if (wantPlaying) await video.play();
  }

  function report(error) {
    say(error.message);
  }

  function indexAt(ms) {
    for (let i = segments.length - 1; i >= 0; i--) {
      if (ms >= segments[i].offset) return i;
    }
    return 0;
  }

  function seekTo(ms) {
    if (!segments.length) return;
    ms = Math.max(0, Math.min(ms, total - 1));
    const index = indexAt(ms);
    const within = (ms - segments[index].offset) / 1000;
    if (index === current && video.readyState > 0) {
      video.currentTime = Math.min(within, video.duration - 0.05);
      show();
    } else {
      load(index, within).catch(report);
    }
  }

  function position() {
    if (current < 0) return 0;
    return segments[current].offset + video.currentTime * 1000;
  }

  function show() {
    const ms = position();
    root.dataset.position = String(Math.round(ms));
    if (!dragging) seek.value = String(ms);
    if (current >= 0) {
      const wall = new Date(segments[current].start + video.currentTime * 1000);
      clock.textContent = viewer.local(wall);
      clock.title = viewer.utc(wall);
    }
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

  video.addEventListener("timeupdate", show);
  video.addEventListener("playing", () => { retries = 0; });
  video.addEventListener("ended", () => {
    if (current + 1 < segments.length) {
      load(current + 1, 0).catch(report);
    } else {
      pause();
    }
  });
  video.addEventListener("error", () => {
    // An expired URL (a long pause) or a rotated key: ask for a fresh one, once.
    if (current < 0 || retries > 0) return;
    retries += 1;
    load(current, video.currentTime || 0).catch(report);
  });
  playButton.addEventListener("click", toggle);
  speed.addEventListener("change", () => setRate(Number(speed.value)));
  seek.addEventListener("input", () => { dragging = true; });
  seek.addEventListener("change", () => {
    dragging = false;
    seekTo(Number(seek.value));
  });
  viewer.keys(seek, {
    toggle, setRate, seekBy: (ms) => seekTo(position() + ms),
  });
  if (!segments.length) say("This recording has no playable segment yet.");
})();
