// bucketreel day page: zoom and pan the server-drawn timeline; a click on a recorded span
// plays the day from the moment clicked (a gap's link plays from where recording resumes).
// Every shape is a link: Tab reaches it and Enter follows it without this script.
"use strict";

(function () {
  const figure = document.getElementById("timeline");
  if (!figure) return;
  const svg = document.getElementById("day-svg");
  const label = document.getElementById("window-label");
  const NS = "http://www.w3.org/2000/svg";
  const WIDTH = 1000;
  const MIN_WIDTH = 2;
  const num = (name) => Number(figure.dataset[name]);
  const day = [num("dayStart"), num("dayEnd")];
  const recorded = [num("recordedStart"), num("recordedEnd")];
  let view = [num("windowStart"), num("windowEnd")];
  const zone = document.body.dataset.zone || "UTC";
  let hm = null;
  try {
    hm = new Intl.DateTimeFormat("en-GB", {
      timeZone: zone, hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    });
  } catch (e) {
    hm = null;
  }
  const hhmm = (t) => (hm ? hm.format(new Date(t)) : new Date(t).toISOString().slice(11, 16));
  // Tick steps by the window's length, as the server draws them (broker/web/pages/daybar.py).
  const TICKS = [[20 * 60, 60], [3600, 300], [3 * 3600, 900], [8 * 3600, 3600]];

  function x(t) {
    return ((t - view[0]) / (view[1] - view[0])) * WIDTH;
  }

  function offsetOfZone(t) {
    // Minutes past local midnight of `t`, from the zone's clock (the step grid's origin).
    const [h, m] = hhmm(t).split(":").map(Number);
    return (h * 60 + m) * 60000 + (t % 60000);
  }

  function layout() {
    for (const piece of svg.querySelectorAll("a.piece")) {
      const start = Number(piece.dataset.start);
      const end = Number(piece.dataset.end);
      const rect = piece.querySelector("rect");
      const left = x(start);
      rect.setAttribute("x", left.toFixed(2));
      rect.setAttribute("width", Math.max(x(end) - left, MIN_WIDTH).toFixed(2));
      const outside = end < view[0] || start > view[1];
      piece.classList.toggle("outside", outside);
      piece.setAttribute("tabindex", outside ? "-1" : "0");
    }
    const ticks = svg.querySelector("g.ticks");
    ticks.replaceChildren();
    const seconds = (view[1] - view[0]) / 1000;
    const step = (TICKS.find(([longest]) => seconds <= longest) || [0, 3 * 3600])[1] * 1000;
    let t = view[0] + ((step - (offsetOfZone(view[0]) % step)) % step);
    for (; t <= view[1]; t += step) {
      const line = document.createElementNS(NS, "line");
      const at = x(t).toFixed(2);
      line.setAttribute("x1", at);
      line.setAttribute("x2", at);
      line.setAttribute("y1", "40");
      line.setAttribute("y2", "46");
      const text = document.createElementNS(NS, "text");
      text.setAttribute("x", at);
      text.setAttribute("y", "60");
      text.setAttribute("class", "tick");
      text.textContent = hhmm(t);
      ticks.append(line, text);
    }
    figure.dataset.windowStart = String(Math.round(view[0]));
    figure.dataset.windowEnd = String(Math.round(view[1]));
    label.textContent = "Showing " + hhmm(view[0]) + " – " + hhmm(view[1]);
    const state = new URL(window.location.href);
    state.hash = "view=" + Math.round(view[0]) + "-" + Math.round(view[1]);
    history.replaceState(history.state, "", state);
  }

  function show(start, end) {
    const length = Math.min(end - start, day[1] - day[0]);
    start = Math.max(day[0], Math.min(start, day[1] - length));
    view = [start, start + length];
    layout();
  }

  function zoom(length) {
    const middle = (view[0] + view[1]) / 2;
    show(middle - length / 2, middle + length / 2);
  }

  figure.querySelector(".zoom").addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const what = button.dataset.zoom;
    if (what === "recorded") show(recorded[0], recorded[1]);
    else if (what === "day") show(day[0], day[1]);
    else if (what) zoom(Number(what) * 1000);
    else if (button.dataset.pan) {
      const shift = (Number(button.dataset.pan) * (view[1] - view[0])) / 2;
      show(view[0] + shift, view[1] + shift);
    }
  });

  // A click inside a recorded span plays from the moment under the pointer.
  svg.addEventListener("click", (event) => {
    const piece = event.target.closest("a.piece.rec");
    if (!piece || event.detail === 0) return; // Enter: the link's own moment (the start)
    const box = svg.querySelector("rect.bg").getBoundingClientRect(); // the window's width
    const at = view[0] + ((event.clientX - box.left) / box.width) * (view[1] - view[0]);
    const start = Number(piece.dataset.start);
    const end = Number(piece.dataset.end);
    const moment = Math.max(start, Math.min(Math.round(at), end - 1));
    const target = new URL(piece.getAttribute("href"), window.location.href);
    target.searchParams.set("at", new Date(moment).toISOString());
    event.preventDefault();
    window.location.assign(target.toString());
  });

  // Enter on a focused span or gap plays from its moment (its link's own address).
  svg.addEventListener("keydown", (event) => {
    const piece = event.target.closest("a.piece");
    if (!piece || event.key !== "Enter") return;
    event.preventDefault();
    window.location.assign(new URL(piece.getAttribute("href"), window.location.href).toString());
  });

  // The window is kept in the address's fragment (Back restores it; a link may name one).
  function kept() {
    const found = /^#view=(\d+)-(\d+)$/.exec(window.location.hash);
    return found ? [Number(found[1]), Number(found[2])] : null;
  }
  window.addEventListener("hashchange", () => {
    const asked = kept();
    if (asked && (asked[0] !== Math.round(view[0]) || asked[1] !== Math.round(view[1]))) {
      show(asked[0], asked[1]);
    }
  });

  // Back to this page: the day is in its address; say which day when it was not.
  const url = new URL(window.location.href);
  if (!url.searchParams.get("day")) {
    url.searchParams.set("day", figure.dataset.day);
    history.replaceState(history.state, "", url);
  }
  const asked = kept();
  if (asked) show(asked[0], asked[1]);
  else layout();
})();
