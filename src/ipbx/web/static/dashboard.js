// The dashboard's live panel: fetched again on every call or registration event of the
// server-sent event stream; call durations tick every second from their start time.
"use strict";
(function () {
  const panel = document.getElementById("live");
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
  for (const type of ["call.started", "call.ringing", "call.answered", "call.ended",
                      "call.missed", "registration.changed"]) {
    source.addEventListener(type, refresh);
  }
  setInterval(tick, 1000);
  tick();
})();
