/* Image wall: a WebSocket to /webui/ws/imagine (protocol in webui/consumers.py).
 *
 * start → images stream in (`image` events with data: URIs, turned into object URLs) and are
 * appended to a CSS-columns masonry grid. A run spends what the form says before Start
 * ("4 images per round × 2 rounds = 8 images"), then waits: only the "One more round" button
 * sends `more` (scrolling never spends quota). A dropped socket shows why and offers Reconnect;
 * images already shown stay.
 */
(function () {
  "use strict";
  const { el, copyText } = window.webui;
  const root = document.querySelector(".wall");
  const MAX_PROMPT = parseInt(root.dataset.maxPrompt, 10) || 8000;
  const MAX_COUNT = parseInt(root.dataset.maxCount, 10) || 6;
  const MAX_ROUNDS = parseInt(root.dataset.maxRounds, 10) || 10;
  const $ = (id) => document.getElementById(id);
  const grid = $("grid"), stateEl = $("wall-state"), progressEl = $("wall-progress"), errorEl = $("wall-error");
  const startBtn = $("wall-start"), stopBtn = $("wall-stop"), reconnectBtn = $("wall-reconnect"), moreBtn = $("wall-more");
  const viewer = $("viewer");

  let ws = null;
  let runId = null;
  let runStatus = "idle";
  let closingOnPurpose = false;
  let moderated = 0;
  const progress = new Map();

  function showError(text) { errorEl.textContent = text || ""; errorEl.hidden = !text; }
  function setState(text) { stateEl.textContent = text; }
  function setRunning(active) { startBtn.disabled = active; stopBtn.disabled = !active; }
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

  // What Start will spend, said before it is pressed; null (and a reason) when the form is out of range.
  let perRound = 4;
  function spend() {
    const count = parseInt($("wall-count").value, 10), rounds = parseInt($("wall-rounds").value, 10);
    const spendEl = $("wall-spend");
    if (!(count >= 1 && count <= MAX_COUNT)) { spendEl.textContent = `Images per round: 1 to ${MAX_COUNT}`; return null; }
    if (!(rounds >= 1 && rounds <= MAX_ROUNDS)) { spendEl.textContent = `Rounds: 1 to ${MAX_ROUNDS}`; return null; }
    spendEl.textContent = `${plural(count, "image")} per round × ${plural(rounds, "round")} = ${plural(count * rounds, "image")}`;
    return { count: count, rounds: rounds };
  }
  $("wall-count").addEventListener("input", spend);
  $("wall-rounds").addEventListener("input", spend);
  spend();

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    closingOnPurpose = false;
    reconnectBtn.hidden = true;
    setState("Connecting…");
    ws = new WebSocket(`${scheme}//${location.host}${root.dataset.wsPath}`);
    ws.onopen = () => { setState("Connected · idle"); showError(""); };
    ws.onmessage = (ev) => { let msg; try { msg = JSON.parse(ev.data); } catch (e) { return; } handle(msg); };
    ws.onclose = (ev) => {
      const wasActive = runStatus === "running" || runStatus === "waiting";
      runStatus = "idle"; runId = null; setRunning(false); progressEl.textContent = ""; moreBtn.hidden = true;
      if (ev.code === 4401) { window.webui.sessionExpired(); setState("Disconnected: session expired"); return; }
      if (ev.code === 4404 || ev.code === 4403) { setState("Disconnected"); return; }
      if (closingOnPurpose) return;
      setState(`Disconnected (code ${ev.code})`);
      showError("The connection to the gateway was lost" + (wasActive ? " while images were being generated" : "") +
        ". Images already shown are kept; press Reconnect to continue.");
      reconnectBtn.hidden = false;
    };
  }

  function handle(msg) {
    if (msg.run_id && runId && msg.run_id !== runId && msg.type !== "status") return;  // a previous run's stragglers
    switch (msg.type) {
      case "status":
        if (msg.status === "running") runId = msg.run_id;
        if (msg.run_id && msg.run_id !== runId) return;
        runStatus = msg.status;
        setRunning(msg.status === "running" || msg.status === "waiting");
        setState({ running: "Generating…", waiting: `Done · ${plural(msg.images || 0, "image")}`, stopped: "Stopped",
                   completed: "Completed (image limit for one run reached)", failed: "Stopped by an error" }[msg.status] || msg.status);
        if (msg.status !== "running") progressEl.textContent = "";
        moreBtn.hidden = msg.status !== "waiting";
        moreBtn.textContent = `One more round (${plural(perRound, "image")})`;
        break;
      case "progress":
        progress.set(msg.image_index, msg.progress);
        progressEl.textContent = Array.from(progress.entries()).filter(([, p]) => p < 100)
          .map(([i, p]) => `#${i + 1} ${p}%`).join(" · ");
        break;
      case "image":
        addImage(msg);
        break;
      case "moderated":
        moderated += 1;
        progressEl.textContent = `${moderated} image(s) blocked by the upstream content policy`;
        break;
      case "error":
        showError(msg.message || "The image wall reported an error.");
        break;
    }
  }

  function dataUrlToObjectUrl(src) {
    const [head, b64] = src.split(",", 2);
    const mime = (head.match(/^data:([^;]+)/) || [])[1] || "image/jpeg";
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return { url: URL.createObjectURL(new Blob([bytes], { type: mime })), mime: mime };
  }

  function addImage(msg) {
    const { url, mime } = dataUrlToObjectUrl(msg.src);
    const ext = { "image/png": "png", "image/webp": "webp", "image/gif": "gif" }[mime] || "jpg";
    const name = `grok-imagine-${msg.run_id}-${msg.seq}.${ext}`;
    const img = el("img", { src: url, alt: msg.prompt, loading: "lazy", "data-seq": msg.seq });
    const fig = el("figure", { class: "tile" }, [
      img,
      el("button", { type: "button", "aria-label": `Open image ${msg.seq}`, onclick: () => open(url, name, msg.prompt) }),
    ]);
    grid.append(fig);
    progress.delete(msg.image_index);
  }

  function open(url, name, prompt) {
    $("viewer-img").src = url;
    $("viewer-img").alt = prompt;
    $("viewer-prompt").textContent = prompt;
    const dl = $("viewer-download");
    dl.href = url; dl.download = name;
    viewer.showModal();
  }
  $("viewer-close").addEventListener("click", () => viewer.close());
  viewer.addEventListener("click", (e) => { if (e.target === viewer) viewer.close(); });
  $("viewer-copy").addEventListener("click", async (e) => {
    const ok = await copyText($("viewer-prompt").textContent);
    e.target.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => { e.target.textContent = "Copy prompt"; }, 1500);
  });

  // One more round only when the user asks for it (no infinite scroll: it spent quota unasked).
  moreBtn.addEventListener("click", () => {
    if (runStatus !== "waiting" || !ws || ws.readyState !== WebSocket.OPEN) return;
    moreBtn.hidden = true;
    ws.send(JSON.stringify({ type: "more" }));
  });

  $("wall-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const prompt = $("wall-prompt").value.trim();
    const plan = spend();
    if (!prompt) { showError("Enter a prompt before starting the wall."); $("wall-prompt").focus(); return; }
    if (prompt.length > MAX_PROMPT) { showError(`The prompt is ${prompt.length} characters long; the limit is ${MAX_PROMPT}.`); return; }
    if (!plan) { showError(`Images per round must be between 1 and ${MAX_COUNT}, rounds between 1 and ${MAX_ROUNDS}.`); return; }
    if (!ws || ws.readyState !== WebSocket.OPEN) { showError("Not connected to the gateway: press Reconnect first."); reconnectBtn.hidden = false; return; }
    showError(""); moderated = 0; progress.clear(); perRound = plan.count; moreBtn.hidden = true;
    runStatus = "running"; setRunning(true); setState("Starting…");
    ws.send(JSON.stringify({ type: "start", prompt: prompt, model: $("wall-model").value,
                             aspect_ratio: $("wall-aspect").value, count: plan.count, rounds: plan.rounds }));
  });
  stopBtn.addEventListener("click", () => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "stop" }));
    setState("Stopping…");
  });
  reconnectBtn.addEventListener("click", connect);
  window.addEventListener("beforeunload", () => { closingOnPurpose = true; if (ws) ws.close(); });

  connect();
})();
