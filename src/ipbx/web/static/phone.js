// The softphone page (/phone): JsSIP over the server's SIP WebSocket listener, one call
// at a time. The status line (role="status") says "Registered", "Ringing" or
// "In call mm:ss"; keypad keys go into the number field, or as RFC 4733 DTMF during a
// call; the call history is GET /phone/history with the extension's SIP credentials.
"use strict";
(function () {
  const root = document.getElementById("phone");
  const byId = (id) => document.getElementById(id);
  const status = byId("status");
  const note = byId("note");
  const caller = byId("caller");
  const number = byId("number");
  const remote = byId("remote");
  const buttons = {
    call: byId("call"), answer: byId("answer"), hangUp: byId("hang-up"),
    hold: byId("hold"), mute: byId("mute"),
    transfer: byId("transfer").querySelector("button"),
  };
  const media = { mediaConstraints: { audio: true, video: false }, pcConfig: { iceServers: [] } };
  let ua = null;
  let account = null; // {extension, password}
  let session = null;
  let answeredAt = 0;
  let reoffering = false; // a hold or resume re-INVITE awaits its answer
  let ticking = 0;
  let newest = null; // when the newest call of the history started

  function basic(user, password) {
    const bytes = new TextEncoder().encode(user + ":" + password);
    return "Basic " + btoa(String.fromCharCode(...bytes));
  }

  async function history() {
    const answer = await fetch("/phone/history", {
      credentials: "omit",
      cache: "no-store",
      headers: { Authorization: basic(account.extension, account.password) },
    });
    if (!answer.ok) throw new Error((await answer.json()).detail || answer.statusText);
    const found = await answer.json();
    const rows = found.calls.map((call) => {
      const row = document.createElement("tr");
      const talked = Math.round(call.duration);
      for (const text of [
        new Date(call.started * 1000).toLocaleString(), call.caller, call.callee, call.result,
        Math.floor(talked / 60) + ":" + String(talked % 60).padStart(2, "0"),
      ]) {
        row.appendChild(document.createElement("td")).textContent = text;
      }
      return row;
    });
    byId("history").replaceChildren(...rows);
    newest = found.calls.length ? found.calls[0].started : null;
    return found;
  }

  // The call record is written once the server has seen the call end: ask a few times.
  async function historyAfterCall() {
    const before = newest;
    for (let tries = 0; tries < 10 && newest === before; tries++) {
      await new Promise((done) => setTimeout(done, 500));
      await history();
    }
  }

  function clock(seconds) {
    const minutes = Math.floor(seconds / 60);
    return String(minutes).padStart(2, "0") + ":" + String(seconds % 60).padStart(2, "0");
  }

  function show() {
    if (!ua) return;
    if (!session) {
      status.textContent = ua.isRegistered() ? "Registered" : "Not registered";
    } else if (session.isEstablished()) {
      const seconds = Math.floor((Date.now() - answeredAt) / 1000);
      const held = session.isOnHold().local ? " (on hold)" : "";
      status.textContent = "In call " + clock(seconds) + held;
    } else if (session.isInProgress() && session.ringing) {
      status.textContent = "Ringing";
    } else if (session.direction === "outgoing") {
      status.textContent = "Calling " + session.remote_identity.uri.user;
    } else {
      status.textContent = "Connecting"; // answered, awaiting the ACK
    }
    const live = session !== null;
    const established = live && session.isEstablished();
    buttons.call.disabled = live;
    buttons.answer.disabled = !(live && session.direction === "incoming" && !established);
    buttons.hangUp.disabled = !live;
    buttons.hold.disabled = !established || reoffering;
    buttons.mute.disabled = buttons.transfer.disabled = !established;
    buttons.hold.setAttribute("aria-pressed", String(established && session.isOnHold().local));
    buttons.mute.setAttribute("aria-pressed", String(established && session.isMuted().audio));
  }

  function hearRemote(connection) {
    connection.addEventListener("track", (event) => {
      remote.srcObject = event.streams[0] || new MediaStream([event.track]);
    });
  }

  function follow(newSession) {
    session = newSession;
    session.ringing = session.direction === "incoming";
    if (session.connection) hearRemote(session.connection);
    session.on("peerconnection", (event) => hearRemote(event.peerconnection));
    session.on("progress", () => { session.ringing = true; show(); });
    session.on("confirmed", () => {
      answeredAt = Date.now();
      ticking = setInterval(show, 1000);
      show();
    });
    for (const change of ["hold", "unhold", "muted", "unmuted", "accepted"]) {
      session.on(change, show);
    }
    const end = (event) => {
      clearInterval(ticking);
      session = null;
      reoffering = false;
      caller.hidden = true;
      remote.srcObject = null;
      const why = event.cause && event.cause !== JsSIP.C.causes.BYE ? event.cause : "";
      note.textContent = why ? "Call ended: " + why : "";
      show();
      historyAfterCall().catch(() => {});
    };
    session.on("ended", end);
    session.on("failed", end);
    show();
  }

  function signIn(extension, password, name) {
    const socket = new JsSIP.WebSocketInterface(root.dataset.websocket);
    const agent = new JsSIP.UA({
      sockets: [socket],
      uri: "sip:" + extension + "@" + root.dataset.domain,
      password: password,
      display_name: name,
      register: true,
    });
    ua = agent;
    ua.on("registered", () => {
      note.textContent = "";
      byId("sign-in").hidden = true;
      byId("dialer").hidden = false;
      show();
    });
    ua.on("unregistered", show);
    ua.on("registrationFailed", (event) => {
      note.textContent = "Registration failed: " + event.cause;
      show();
    });
    ua.on("disconnected", () => {
      if (ua !== agent) return; // signed out
      note.textContent = "Cannot reach " + root.dataset.websocket + " (with a self-signed " +
        "certificate, open https://" + new URL(root.dataset.websocket).host +
        "/ once and accept it).";
      show();
    });
    ua.on("newRTCSession", (event) => {
      if (session) {
        if (event.originator === "remote") event.session.terminate({ status_code: 486 });
        return;
      }
      if (event.originator === "remote") {
        const from = event.session.remote_identity;
        caller.textContent = "Call from " +
          (from.display_name ? from.display_name + " (" + from.uri.user + ")" : from.uri.user);
        caller.hidden = false;
      }
      follow(event.session);
    });
    ua.start();
  }

  byId("sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    account = { extension: byId("extension").value.trim(), password: byId("password").value };
    status.textContent = "Signing in";
    try {
      const found = await history();
      byId("account").textContent = found.extension + " · " + found.name;
      signIn(account.extension, account.password, found.name);
    } catch (error) {
      status.textContent = "Signed out";
      note.textContent = String(error.message);
    }
  });

  byId("sign-out").addEventListener("click", () => {
    if (ua) ua.stop();
    ua = session = account = null;
    byId("dialer").hidden = true;
    byId("sign-in").hidden = false;
    status.textContent = "Signed out";
  });

  byId("dial").addEventListener("submit", (event) => {
    event.preventDefault();
    const target = number.value.trim();
    if (!ua || session || !target) return;
    note.textContent = "";
    ua.call(target, media); // newRTCSession follows the session it makes
  });

  for (const key of document.querySelectorAll("[data-key]")) {
    key.addEventListener("click", () => {
      if (session && session.isEstablished()) {
        session.sendDTMF(key.dataset.key, { transportType: JsSIP.C.DTMF_TRANSPORT.RFC2833 });
      } else {
        number.value += key.dataset.key;
      }
    });
  }

  buttons.answer.addEventListener("click", () => session && session.answer(media));
  buttons.hangUp.addEventListener("click", () => session && session.terminate());
  buttons.hold.addEventListener("click", () => {
    if (!session || reoffering) return;
    // One re-INVITE at a time: the button waits for the last one's answer.
    const done = () => { reoffering = false; show(); };
    const sent = session.isOnHold().local ? session.unhold({}, done) : session.hold({}, done);
    reoffering = sent !== false;
    show();
  });
  buttons.mute.addEventListener("click", () => {
    if (!session) return;
    if (session.isMuted().audio) session.unmute({ audio: true });
    else session.mute({ audio: true });
  });

  byId("transfer").addEventListener("submit", (event) => {
    event.preventDefault();
    const target = byId("transfer-to").value.trim();
    if (!session || !target) return;
    // ipbx carries the transfer out and hangs up this side when the target answers.
    const failed = (failure) => {
      const why = failure.response ? failure.response.status_code : failure.cause;
      note.textContent = "Transfer failed: " + why;
    };
    session.refer(target, { eventHandlers: { failed: failed, requestFailed: failed } });
  });
})();
