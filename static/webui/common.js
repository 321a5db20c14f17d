/* Shared helpers of the web pages: CSRF header, same-origin API calls, error envelopes, session expiry. */
(function () {
  "use strict";
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function sessionExpired() {
    const banner = document.getElementById("session-banner");
    if (banner) banner.hidden = false;
  }

  /* Read the message of an OpenAI-style error envelope {"error":{"message",...}} (or a plain text body). */
  async function errorOf(resp) {
    let text = "";
    try { text = await resp.text(); } catch (e) { /* body gone */ }
    let err = null;
    try { err = JSON.parse(text).error; } catch (e) { /* not JSON */ }
    let message = (err && err.message) || "";
    if (!message && resp.status === 403 && /CSRF/i.test(text)) {
      message = "The page's security token is no longer valid (CSRF check failed): reload the page and try again.";
    }
    if (!message) message = `The gateway answered ${resp.status} ${resp.statusText || ""}`.trim() + ".";
    if (resp.status === 401 && err && err.code === "webui_session_required") sessionExpired();
    return { status: resp.status, code: err && err.code, param: err && err.param, message: message };
  }

  async function api(url, options) {
    const opts = Object.assign({ credentials: "same-origin" }, options || {});
    opts.headers = Object.assign({ "X-CSRFToken": csrf() }, opts.headers || {});
    if (opts.json !== undefined) {
      opts.body = JSON.stringify(opts.json);
      opts.headers["Content-Type"] = "application/json";
      delete opts.json;
    }
    return fetch(url, opts);
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of [].concat(children || [])) if (c) node.append(c);
    return node;
  }

  async function copyText(text) {
    try { await navigator.clipboard.writeText(text); return true; } catch (e) {
      const ta = el("textarea", { style: "position:fixed;opacity:0" }); ta.value = text;
      document.body.append(ta); ta.select();
      let ok = false; try { ok = document.execCommand("copy"); } catch (e2) { ok = false; }
      ta.remove(); return ok;
    }
  }

  window.webui = { api: api, errorOf: errorOf, el: el, copyText: copyText, sessionExpired: sessionExpired };
})();
