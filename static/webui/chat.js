/* Web Chat: talks to /webui/api/chat/completions (the /v1 chat service) with stream=true.
 *
 * The conversation lives in localStorage (STORE), so a reload keeps it. Streaming uses fetch + a
 * ReadableStream reader parsing server-sent events: `data: {chat.completion.chunk}` lines,
 * `delta.reasoning_content` into a collapsible block, `delta.content` rendered as Markdown
 * (marked) and sanitised (DOMPurify) on every animation frame, `delta.annotations` as source
 * links, `data: {"error":{...}}` shown in place, `data: [DONE]` last. Stop aborts the fetch
 * (AbortController), which closes the connection and so the upstream call.
 */
(function () {
  "use strict";
  const { api, errorOf, el, copyText } = window.webui;
  const root = document.querySelector(".chat");
  const MAX_CHARS = parseInt(root.dataset.maxChars, 10) || 32000;
  const MAX_IMAGE_BYTES = 10 * 1024 * 1024;
  const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif"];
  const STORE = "webui.chat.v1";
  const MODEL_STORE = "webui.chat.model";

  const $ = (id) => document.getElementById(id);
  const messagesEl = $("messages"), promptEl = $("prompt"), modelEl = $("model");
  const sendBtn = $("send"), stopBtn = $("stop"), fileEl = $("file");
  const composerError = $("composer-error"), attachmentsEl = $("attachments");

  let state = load();
  let pending = [];          // attachments of the next message: {name, dataUrl}
  let controller = null;     // AbortController of the request in flight

  // Answers are untrusted text (a prompt injection can make the model write anything), so the
  // sanitiser lets nothing in them make the browser fetch a URL on its own: images from another
  // origin become a button (see remoteImages), other fetching attributes from another origin are
  // dropped, and links keep only http(s) targets. The CSP (img-src 'self' data: blob:) is the backstop.
  const FETCHING = ["src", "srcset", "poster", "background", "xlink:href", "action", "formaction"];
  const httpUrl = (value) => {
    try { const u = new URL(value, location.href); return (u.protocol === "http:" || u.protocol === "https:") ? u : null; }
    catch (e) { return null; }
  };
  const sameOrigin = (value) => { const u = httpUrl(value); return !!u && u.origin === location.origin; };
  const inlineData = (value) => /^data:image\/(png|jpe?g|gif|webp);/i.test(value || "");

  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "IMG") {
      const src = node.getAttribute("src") || "";
      node.removeAttribute("srcset");
      if (!sameOrigin(src) && !inlineData(src)) {
        node.removeAttribute("src");
        if (httpUrl(src)) node.setAttribute("data-remote-src", httpUrl(src).href);
      }
    }
    for (const name of FETCHING) {
      const value = node.getAttribute(name);
      if (value !== null && !sameOrigin(value) && !(name === "src" && inlineData(value))) node.removeAttribute(name);
    }
    if (node.hasAttribute("href")) {
      const target = httpUrl(node.getAttribute("href"));
      if (node.tagName !== "A" || !target) node.removeAttribute("href");  // javascript:, data:, … are not links
      else {
        node.setAttribute("href", target.href);
        node.setAttribute("target", "_blank");  // links open in a new tab without access to this page
        node.setAttribute("rel", "noopener noreferrer");
      }
    }
  });
  const PURIFY = { FORBID_TAGS: ["style", "form", "button", "iframe"], FORBID_ATTR: ["style"] };  // inputs stay: task lists

  // A remote image waits behind a button naming its host; a click opens it in a new tab (without
  // this page as referrer), the one fetch the reader chose.
  function remoteImageButton(url, alt) {
    const host = new URL(url).host;
    return el("button", { type: "button", class: "remote-image", title: url, "data-remote-src": url,
      text: `Image from ${host}${alt ? ` (${alt})` : ""} — open`,
      onclick: () => window.open(url, "_blank", "noopener,noreferrer") });
  }
  function remoteImages(root) {
    for (const img of root.querySelectorAll("img[data-remote-src]")) {
      img.replaceWith(remoteImageButton(img.getAttribute("data-remote-src"), img.getAttribute("alt") || ""));
    }
    for (const img of root.querySelectorAll("img:not([src])")) img.remove();
  }

  // Image models answer with a bare link in the grok_url / local_url formats: show those inline
  // when they come from this gateway (/v1/files/image), behind a button otherwise.
  const IMAGE_LINK = /(\.(png|jpe?g|webp|gif)([?#].*)?$)|\/v1\/files\/image\?/i;
  function inlineImages(root) {
    for (const a of root.querySelectorAll("a[href]")) {
      const href = a.getAttribute("href");
      const text = a.textContent.trim();
      const bare = text === href || (httpUrl(text) && httpUrl(text).href === href);
      if (a.querySelector("img") || !bare || !IMAGE_LINK.test(href)) continue;
      if (sameOrigin(href)) a.replaceChildren(el("img", { src: href, alt: "generated image", loading: "lazy" }));
      else a.replaceWith(remoteImageButton(href, ""));
    }
  }
  const sourceLink = (s) => {
    const target = httpUrl(s.url);
    return target ? el("a", { href: target.href, target: "_blank", rel: "noopener noreferrer", text: s.title || s.url })
      : el("span", { class: "source-unsafe", text: s.title || s.url });
  };

  // ---------------------------------------------------------------- storage
  function load() {
    try {
      const s = JSON.parse(localStorage.getItem(STORE) || "null");
      if (s && Array.isArray(s.messages)) {
        for (const m of s.messages) {
          if (m.streaming) { m.streaming = false; if (!m.error) m.note = "Interrupted by a page reload."; }
        }
        return s;
      }
    } catch (e) { /* corrupt: start over */ }
    return { messages: [] };
  }
  function save() {
    try {
      localStorage.setItem(STORE, JSON.stringify(state));
    } catch (e) {
      // Quota: drop the bytes of older attachments (the text stays), then try once more.
      for (const m of state.messages.slice(0, -1)) if (m.images && m.images.length) { m.images = []; m.imagesDropped = true; }
      try { localStorage.setItem(STORE, JSON.stringify(state)); } catch (e2) { /* keep in memory only */ }
    }
  }

  // ---------------------------------------------------------------- rendering
  function showComposerError(text) {
    composerError.textContent = text;
    composerError.hidden = !text;
  }

  function renderMessage(m) {
    const node = el("article", { class: `msg ${m.role}`, "data-id": m.id, "data-role": m.role });
    node.append(el("div", { class: "role", text: m.role === "user" ? "You" : (m.model || "Assistant") }));
    if (m.role === "user") {
      node.append(el("div", { class: "content", text: m.text }));
      if (m.images && m.images.length) {
        node.append(el("div", { class: "thumbs" }, m.images.map((src) => el("img", { src: src, alt: "attached image" }))));
      } else if (m.imagesDropped) {
        node.append(el("p", { class: "muted", text: "(attached images not kept: browser storage is full)" }));
      }
      return node;
    }
    if (m.reasoning) {
      const det = el("details", { class: "reasoning" }, [
        el("summary", { text: m.streaming && !m.text ? "Thinking…" : "Reasoning" }),
        el("div", { class: "reasoning-text", text: m.reasoning }),
      ]);
      if (m.streaming && !m.text) det.open = true;
      node.append(det);
    }
    const content = el("div", { class: "content" });
    content.append(DOMPurify.sanitize(marked.parse(m.text || "", { gfm: true, breaks: true }),
      Object.assign({ RETURN_DOM_FRAGMENT: true }, PURIFY)));
    remoteImages(content);
    inlineImages(content);
    node.append(content);
    if (m.sources && m.sources.length) {
      const list = el("ol", {}, m.sources.map((s) =>
        el("li", {}, sourceLink(s))));
      node.append(el("div", { class: "sources" }, [el("strong", { text: "Sources" }), list]));
    }
    if (m.error) node.append(el("p", { class: "msg-error", role: "alert", text: m.error }));
    if (m.note) node.append(el("p", { class: "muted note", text: m.note }));
    if (m.streaming) node.classList.add("streaming");
    else {
      node.append(el("div", { class: "actions" }, [
        el("button", { type: "button", class: "retry", text: "Retry", onclick: () => retry(m.id) }),
        m.text && el("button", { type: "button", class: "copy", text: "Copy", onclick: async (ev) => {
          const ok = await copyText(m.text || "");
          ev.target.textContent = ok ? "Copied" : "Copy failed";
          setTimeout(() => { ev.target.textContent = "Copy"; }, 1500);
        } }),
      ]));
    }
    return node;
  }

  function renderAll() {
    messagesEl.replaceChildren();
    if (!state.messages.length) {
      messagesEl.append(el("p", { id: "empty-hint", class: "muted hint",
        text: "Ask anything. Enter sends, Shift+Enter adds a new line. Attach images for vision models." }));
    }
    for (const m of state.messages) messagesEl.append(renderMessage(m));
    messagesEl.scrollTop = messagesEl.scrollHeight;
    window.scrollTo(0, document.body.scrollHeight);
  }

  let frame = 0;
  function rerender(m) {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      const old = messagesEl.querySelector(`[data-id="${m.id}"]`);
      const openBefore = old && old.querySelector("details.reasoning");
      const fresh = renderMessage(m);
      const det = fresh.querySelector("details.reasoning");
      if (det && openBefore) det.open = openBefore.open || (m.streaming && !m.text);
      if (old) old.replaceWith(fresh); else messagesEl.append(fresh);
      window.scrollTo(0, document.body.scrollHeight);
    });
  }

  function setBusy(busy) {
    sendBtn.hidden = busy;
    stopBtn.hidden = !busy;
    modelEl.disabled = busy;
  }

  // ---------------------------------------------------------------- models
  async function loadModels() {
    const status = $("models-status");
    try {
      const resp = await api(root.dataset.modelsUrl);
      if (!resp.ok) { const err = await errorOf(resp); status.textContent = `Could not load models: ${err.message}`; modelEl.replaceChildren(el("option", { value: "", text: "No models" })); return; }
      const data = (await resp.json()).data || [];
      const groups = {};
      for (const m of data) (groups[m.capability || "chat"] = groups[m.capability || "chat"] || []).push(m);
      modelEl.replaceChildren();
      for (const [cap, list] of Object.entries(groups)) {
        const label = { chat: "Chat", image: "Images", image_edit: "Image edit", video: "Video" }[cap] || cap;
        modelEl.append(el("optgroup", { label: label }, list.map((m) => el("option", { value: m.id, text: m.id }))));
      }
      if (!data.length) {
        modelEl.append(el("option", { value: "", text: "No models" }));
        status.textContent = "No models available: the gateway has no usable account right now.";
        return;
      }
      const saved = localStorage.getItem(MODEL_STORE);
      const chat = data.find((m) => (m.capability || "chat") === "chat");
      modelEl.value = data.some((m) => m.id === saved) ? saved : (chat || data[0]).id;
      status.textContent = "";
    } catch (e) {
      status.textContent = `Could not load models: network error (${e.message}).`;
    }
  }
  modelEl.addEventListener("change", () => localStorage.setItem(MODEL_STORE, modelEl.value));

  // ---------------------------------------------------------------- attachments
  function renderAttachments() {
    attachmentsEl.replaceChildren(...pending.map((a, i) => el("span", { class: "att" }, [
      el("img", { src: a.dataUrl, alt: a.name, title: a.name }),
      el("button", { type: "button", "aria-label": `Remove ${a.name}`, text: "×", onclick: () => { pending.splice(i, 1); renderAttachments(); } }),
    ])));
  }
  function readAsDataUrl(file) {
    return new Promise((resolve, reject) => {
      const r = new FileReader();
      r.onload = () => resolve(r.result);
      r.onerror = () => reject(r.error);
      r.readAsDataURL(file);
    });
  }
  async function addFiles(files) {
    const refused = [];
    for (const f of files) {
      if (!IMAGE_TYPES.includes(f.type)) { refused.push(`“${f.name}” is not an image (only PNG, JPEG, WebP and GIF can be attached)`); continue; }
      if (f.size > MAX_IMAGE_BYTES) { refused.push(`“${f.name}” is larger than 10 MB`); continue; }
      pending.push({ name: f.name, dataUrl: await readAsDataUrl(f) });
    }
    showComposerError(refused.length ? refused.join("; ") + "." : "");
    renderAttachments();
  }
  fileEl.addEventListener("change", () => { addFiles(Array.from(fileEl.files)); fileEl.value = ""; });
  root.addEventListener("dragover", (e) => e.preventDefault());
  root.addEventListener("drop", (e) => { e.preventDefault(); addFiles(Array.from(e.dataTransfer.files)); });

  // ---------------------------------------------------------------- sending
  function apiMessages(upto) {
    const out = [];
    for (const m of state.messages.slice(0, upto)) {
      if (m.role === "assistant") {
        if (m.error || !m.text) continue;  // failed or empty turns are not history
        out.push({ role: "assistant", content: m.text });
      } else if (m.images && m.images.length) {
        out.push({ role: "user", content: [{ type: "text", text: m.text },
          ...m.images.map((u) => ({ type: "image_url", image_url: { url: u } }))] });
      } else {
        out.push({ role: "user", content: m.text });
      }
    }
    return out;
  }

  const newId = () => Date.now().toString(36) + Math.random().toString(36).slice(2, 8);

  function validatePrompt(text) {
    if (!text.trim() && !pending.length) return "Type a message first: the prompt is empty.";
    if (text.length > MAX_CHARS) return `Your message is ${text.length} characters long; the limit is ${MAX_CHARS}. Shorten it or split it.`;
    if (!modelEl.value) return "Choose a model first (no model is available yet).";
    return "";
  }

  async function send() {
    if (controller) return;
    const text = promptEl.value;
    const problem = validatePrompt(text);
    if (problem) { showComposerError(problem); promptEl.focus(); return; }
    showComposerError("");
    state.messages.push({ id: newId(), role: "user", text: text, images: pending.map((a) => a.dataUrl) });
    pending = []; renderAttachments();
    promptEl.value = ""; updateCount();
    await run();
  }

  function retry(id) {
    if (controller) return;
    const i = state.messages.findIndex((m) => m.id === id);
    if (i < 0) return;
    state.messages.splice(i);  // drop this answer (and anything after it), ask again
    run();
  }

  function handleChunk(m, obj) {
    if (obj.error) { m.error = obj.error.message || "The gateway reported an error."; return; }
    const choice = (obj.choices || [])[0];
    if (!choice) return;
    const d = choice.delta || {};
    if (d.reasoning_content) m.reasoning = (m.reasoning || "") + d.reasoning_content;
    if (d.content) m.text += d.content;
    if (d.annotations) {
      m.sources = m.sources || [];
      for (const a of d.annotations) {
        const c = a.url_citation || a;
        if (c.url && !m.sources.some((s) => s.url === c.url)) m.sources.push({ url: c.url, title: c.title || c.url });
      }
    }
  }

  async function run() {
    const upto = state.messages.length;
    const m = { id: newId(), role: "assistant", text: "", reasoning: "", model: modelEl.value, streaming: true };
    state.messages.push(m);
    save(); renderAll();
    setBusy(true);
    controller = new AbortController();
    try {
      const resp = await api(root.dataset.chatUrl, {
        method: "POST", signal: controller.signal,
        json: { model: m.model, messages: apiMessages(upto), stream: true },
      });
      if (!resp.ok) {
        const err = await errorOf(resp);
        m.error = err.code === "webui_session_required" ? "Your session has expired: sign in again (link above)." : err.message;
      } else if ((resp.headers.get("content-type") || "").includes("text/event-stream")) {
        await readStream(resp, m);
      } else {
        const body = await resp.json();  // a non-streamed answer (should not happen with stream=true)
        const msg = ((body.choices || [])[0] || {}).message || {};
        m.text = msg.content || ""; m.reasoning = msg.reasoning_content || m.reasoning;
      }
    } catch (e) {
      if (e.name === "AbortError") m.note = "Stopped.";
      else m.error = `Network error: the gateway could not be reached (${e.message}).`;
    } finally {
      controller = null;
      m.streaming = false;
      if (!m.text && !m.error && !m.note && !m.reasoning) m.note = "The answer was empty.";
      save(); setBusy(false); rerender(m);
      promptEl.focus();
    }
  }

  async function readStream(resp, m) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
        if (!data) continue;  // a comment (keep-alive) or an empty event
        if (data === "[DONE]") { save(); return; }
        try { handleChunk(m, JSON.parse(data)); } catch (e) { continue; }
        rerender(m);
      }
      save();
    }
    if (!m.error && !m.text) m.error = "The stream ended before an answer arrived.";
  }

  // ---------------------------------------------------------------- wiring
  function updateCount() {
    const n = promptEl.value.length;
    $("char-count").textContent = n;
    $("char-count").parentElement.classList.toggle("error", n > MAX_CHARS);
  }
  promptEl.addEventListener("input", () => { updateCount(); if (composerError.textContent) showComposerError(""); });
  promptEl.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  stopBtn.addEventListener("click", () => { if (controller) controller.abort(); });
  $("new-chat").addEventListener("click", () => {
    if (controller) controller.abort();
    state = { messages: [] }; save(); renderAll(); showComposerError(""); promptEl.focus();
  });

  renderAll();
  loadModels();
  promptEl.focus();
})();
