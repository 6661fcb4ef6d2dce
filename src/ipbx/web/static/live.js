// A live panel: an element with data-source (its HTML, fetched again), data-events (a
// server-sent event stream) and data-types (the event types that change it). Elements
// with class "duration" and data-since (epoch seconds) tick every second.
"use strict";
(function () {
  const panel = document.querySelector("[data-events]");
  let pending = false;
  async function refresh() {
    if (pending) return;
    pending = true;
    try {
      const answer = await fetch(panel.dataset.source, { credentials: "same-origin" });
      if (answer.ok) panel.innerHTML = await answer.text();
    } finally {
      pending = false;
    }
  }
  function tick() {
    const now = Date.now() / 1000;
    for (const cell of panel.querySelectorAll(".duration")) {
      const seconds = Math.max(0, Math.floor(now - Number(cell.dataset.since)));
      const minutes = Math.floor(seconds / 60);
      cell.textContent = minutes + ":" + String(seconds % 60).padStart(2, "0");
    }
  }
  const source = new EventSource(panel.dataset.events);
  for (const type of panel.dataset.types.split(" ")) {
    source.addEventListener(type, refresh);
  }
  setInterval(tick, 1000);
  tick();
})();
