/* Voice page: token from POST /webui/api/voice/token (docs/upstream-protocol.md §10), then the LiveKit browser client
 * (vendored livekit-client UMD, global `LivekitClient`) connects to the returned URL itself.
 *
 * Shows the connection state as LiveKit reports it, a microphone level meter (Web Audio analyser on
 * the local microphone track) and the live transcript (LiveKit transcription events and
 * `lk.transcription` text streams, when the agent sends them). Every failure says which step
 * failed: no eligible account (429), token refused (the gateway's or upstream's message),
 * network (gateway or LiveKit unreachable), microphone refused.
 */
(function () {
  "use strict";
  const { api, errorOf, el } = window.webui;
  const LK = window.LivekitClient;
  const root = document.querySelector(".voice");
  const $ = (id) => document.getElementById(id);
  const stateEl = $("voice-state"), errorEl = $("voice-error"), roomEl = $("voice-room");
  const startBtn = $("voice-start"), stopBtn = $("voice-stop");
  const meter = $("mic-level"), micStatus = $("mic-status"), transcript = $("transcript");

  let room = null, micTrack = null, audioCtx = null, levelTimer = 0, attempt = 0;

  function setState(text) {
    stateEl.textContent = text;
    stateEl.dataset.state = text.split(":")[0];
    // every state this attempt went through, for the curious (and the browser tests)
    stateEl.dataset.history = (stateEl.dataset.history ? stateEl.dataset.history + " > " : "") + stateEl.dataset.state;
  }
  function showError(text) { errorEl.textContent = text || ""; errorEl.hidden = !text; }

  function addLine(who, text, id) {
    if (transcript.querySelector("p.muted")) transcript.replaceChildren();
    let line = id ? transcript.querySelector(`[data-seg="${CSS.escape(id)}"]`) : null;
    if (!line) {
      line = el("p", { class: "line", "data-seg": id || "" }, [el("span", { class: "who", text: who }), el("span", { class: "text" })]);
      transcript.append(line);
    }
    line.querySelector(".text").textContent = text;
    transcript.scrollTop = transcript.scrollHeight;
  }

  async function startMic() {
    try {
      micTrack = await LK.createLocalAudioTrack({ echoCancellation: true, noiseSuppression: true });
    } catch (e) {
      micStatus.textContent = `unavailable: ${e.message || e.name}`;
      return;
    }
    micStatus.textContent = "on";
    micStatus.dataset.started = "1";
    try {
      audioCtx = new AudioContext();
      const source = audioCtx.createMediaStreamSource(new MediaStream([micTrack.mediaStreamTrack]));
      const analyser = audioCtx.createAnalyser();
      analyser.fftSize = 512;
      source.connect(analyser);
      const buf = new Float32Array(analyser.fftSize);
      levelTimer = setInterval(() => {
        analyser.getFloatTimeDomainData(buf);
        let sum = 0;
        for (const v of buf) sum += v * v;
        meter.value = Math.min(1, Math.sqrt(sum / buf.length) * 4);
      }, 100);
    } catch (e) {
      micStatus.textContent = `on (level meter unavailable: ${e.message})`;
    }
  }

  function stopMic() {
    clearInterval(levelTimer); levelTimer = 0; meter.value = 0;
    if (audioCtx) { audioCtx.close().catch(() => {}); audioCtx = null; }
    if (micTrack) { micTrack.stop(); micTrack = null; }
    micStatus.textContent = "off";
  }

  async function fetchToken() {
    let resp;
    try {
      resp = await api(root.dataset.tokenUrl, { method: "POST", json: {
        voice: $("voice").value, personality: $("personality").value || "assistant",
        speed: parseFloat($("speed").value) || 1.0, instruction: $("instruction").value,
      } });
    } catch (e) {
      throw new Error(`Network: the gateway could not be reached (${e.message}).`);
    }
    if (resp.ok) return resp.json();
    const err = await errorOf(resp);
    if (err.code === "webui_session_required") throw new Error("Your session has expired: sign in again (link above).");
    if (err.code === "no_eligible_account") throw new Error(`No eligible account: ${err.message}`);
    if (resp.status === 400) throw new Error(`Invalid settings (${err.param || "request"}): ${err.message}`);
    throw new Error(`Token refused (${resp.status}): ${err.message}`);
  }

  function wireRoom(r, myAttempt) {
    r.on(LK.RoomEvent.ConnectionStateChanged, (s) => { if (myAttempt === attempt) setState(String(s)); });
    r.on(LK.RoomEvent.Disconnected, (reason) => {
      if (myAttempt !== attempt) return;
      const name = (LK.DisconnectReason && LK.DisconnectReason[reason]) || reason;
      setState(`disconnected: ${name === undefined ? "closed" : name}`);
      finish();
    });
    r.on(LK.RoomEvent.TrackSubscribed, (track) => {
      if (track.kind === "audio") document.body.append(track.attach());
    });
    if (LK.RoomEvent.TranscriptionReceived) {
      r.on(LK.RoomEvent.TranscriptionReceived, (segments, participant) => {
        const who = participant && participant.identity === r.localParticipant.identity ? "You" : "Grok";
        for (const s of segments) addLine(who, s.text, s.id);
      });
    }
    if (typeof r.registerTextStreamHandler === "function") {
      r.registerTextStreamHandler("lk.transcription", async (reader, info) => {
        const who = info && info.identity === r.localParticipant.identity ? "You" : "Grok";
        const id = reader.info && reader.info.id;
        let text = "";
        for await (const chunk of reader) { text += chunk; addLine(who, text, id); }
      });
    }
  }

  function finish() {
    stopMic();
    startBtn.disabled = false; stopBtn.disabled = true;
  }

  async function start() {
    const myAttempt = ++attempt;
    stateEl.dataset.history = "";
    showError("");
    startBtn.disabled = true; stopBtn.disabled = false;
    setState("requesting token");
    let grant;
    try {
      grant = await fetchToken();
    } catch (e) {
      setState("not connected");
      showError(e.message);
      finish();
      return;
    }
    if (myAttempt !== attempt) return;
    roomEl.textContent = `${grant.room_name || "?"} as ${grant.participant_name || "?"} · ${grant.url}`;
    setState("token received");
    await startMic();
    room = new LK.Room({ adaptiveStream: true, dynacast: true });
    wireRoom(room, myAttempt);
    setState("connecting");
    try {
      await room.connect(grant.url, grant.token, { autoSubscribe: true });
      if (micTrack) await room.localParticipant.publishTrack(micTrack);
    } catch (e) {
      if (myAttempt !== attempt) return;
      const why = e && e.message ? e.message : String(e);
      setState(`disconnected: ${why}`);
      showError(`Could not connect to the voice server at ${grant.url} (network or LiveKit refused the session): ${why}`);
      finish();
    }
  }

  async function hangUp() {
    attempt++;
    if (room) { try { await room.disconnect(); } catch (e) { /* already gone */ } room = null; }
    setState("disconnected: hung up");
    finish();
  }

  if (!LK) {
    setState("unavailable");
    showError("The LiveKit client library did not load (static/vendor/livekit-client.umd.js); run `make vendor`.");
    startBtn.disabled = true;
    return;
  }
  $("voice-form").addEventListener("submit", (e) => { e.preventDefault(); start(); });
  stopBtn.addEventListener("click", hangUp);
})();
