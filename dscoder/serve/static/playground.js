// dscoder playground: chat (POST /v1/chat/completions) and fill-in-the-middle at the
// cursor (POST /infill), both streamed as server-sent events. Model output only ever
// reaches the page through textContent / textarea values, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const code = $("code");
const state = { model: null, messages: [], chatAbort: null, codeAbort: null, insertion: null };

// ---- settings, auth, status ---------------------------------------------------------
const query = new URLSearchParams(location.search);
if (query.has("key")) {  // keep the key for this tab, but out of the address bar
  sessionStorage.setItem("dscoder-key", query.get("key"));
  query.delete("key");
  history.replaceState(null, "", location.pathname + (query.size ? "?" + query : ""));
}
$("api-key").value = sessionStorage.getItem("dscoder-key") || "";
$("api-key").addEventListener("change", () => {
  sessionStorage.setItem("dscoder-key", $("api-key").value.trim());
  refreshStatus();
});

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

function settings() {
  const maxTokens = parseInt($("max-tokens").value, 10);
  const temperature = parseFloat($("temperature").value);
  return { max_tokens: maxTokens > 0 ? maxTokens : 256, temperature: temperature >= 0 ? temperature : 0 };
}

async function errorOf(resp) {
  let message = `HTTP ${resp.status}`, code = null;
  try {
    const body = await resp.json();
    if (body.error) message += ": " + (body.error.message || JSON.stringify(body.error));
    else if (body.detail) message += ": " + JSON.stringify(body.detail);
    code = body.error && body.error.code;
  } catch (_) { /* not JSON */ }
  const err = new Error(message);
  err.code = code;
  return err;
}

async function refreshStatus() {
  const status = $("status");
  let model = "?", health, ok = false;
  try {
    const h = await fetch("/health", { headers: headers() });
    const hb = await h.json().catch(() => ({}));
    health = typeof hb.status === "string" ? hb.status : `health: HTTP ${h.status}`;
    if (hb.error) health += ": " + hb.error;
    const resp = await fetch("/v1/models", { headers: headers() });
    if (!resp.ok) throw await errorOf(resp);
    const body = await resp.json();
    state.model = body.data && body.data.length ? body.data[0].id : null;
    model = state.model ?? "none";
    ok = h.ok;
  } catch (err) {
    health = err.message;
  }
  status.textContent = `model: ${model} · ${health}`;
  status.classList.toggle("error", !ok);
  clearTimeout(state.statusTimer);  // while loading or refused, look again soon
  state.statusTimer = setTimeout(refreshStatus, ok ? 20000 : 3000);
}

// Yields the JSON object of each `data:` line; ends at `data: [DONE]` or the end of the body.
async function* sse(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).replace(/\r$/, "");
        buffer = buffer.slice(nl + 1);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        const event = JSON.parse(data);
        if (event.error) throw new Error(event.error.message || JSON.stringify(event.error));
        yield event;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// ---- chat -----------------------------------------------------------------------------
function note(text) {
  const span = document.createElement("span");
  span.className = "note";
  span.textContent = text;
  return span;
}

// Text outside ``` fences as text, fenced code (its language tag dropped) in <pre>.
function renderText(el, text) {
  el.replaceChildren();
  text.split("```").forEach((part, i) => {
    if (i % 2 === 1) {
      const pre = document.createElement("pre");
      const nl = part.indexOf("\n");
      pre.textContent = nl >= 0 ? part.slice(nl + 1).replace(/\n$/, "") : "";
      el.append(pre);
    } else {
      if (i > 0) part = part.replace(/^\n/, "");
      if (part) el.append(document.createTextNode(part));
    }
  });
}

function addMessage(role, text) {
  const el = document.createElement("div");
  el.className = "msg " + role;
  renderText(el, text);
  $("chat-log").append(el);
  scrollChat();
  return el;
}

function scrollChat() { const log = $("chat-log"); log.scrollTop = log.scrollHeight; }

function setChatBusy(busy) {
  $("chat-send").disabled = busy;
  $("chat-stop").disabled = !busy;
}

async function sendChat() {
  const input = $("chat-input");
  const text = input.value;
  if (!text.trim() || state.chatAbort) return;
  const ctl = new AbortController();
  state.chatAbort = ctl;
  setChatBusy(true);
  if (!state.model) await refreshStatus();
  input.value = "";
  const history = state.messages;  // Clear starts a new array; a late answer stays in the old one
  history.push({ role: "user", content: text });
  const userEl = addMessage("user", text);
  const el = addMessage("assistant", "");
  let answer = "", finish = null;
  try {
    const resp = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), signal: ctl.signal,
      body: JSON.stringify({ model: state.model, messages: history, stream: true, ...settings() }),
    });
    if (!resp.ok) throw await errorOf(resp);
    for await (const chunk of sse(resp)) {
      const choice = (chunk.choices || [])[0] || {};
      const piece = choice.delta && choice.delta.content;
      if (piece) {
        answer += piece;
        renderText(el, answer);
        scrollChat();
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
    if (finish === "length") el.append(note(" (max tokens reached)"));
  } catch (err) {
    if (ctl.signal.aborted) {
      if (answer) el.append(note(" (stopped)"));
    } else if (answer) {  // what came stays, with what went wrong after it
      el.append(note(` (${err.message})`));
    } else {
      el.className = "msg error";
      el.textContent = err.message;
    }
  } finally {
    if (answer) {
      history.push({ role: "assistant", content: answer });
    } else {  // nothing came back: the question was not answered, so give it back to the input
      history.pop();
      userEl.remove();
      if (!el.classList.contains("error")) el.remove();
      if (!input.value) input.value = text;
    }
    state.chatAbort = null;
    setChatBusy(false);
  }
}

$("chat-send").addEventListener("click", sendChat);
$("chat-stop").addEventListener("click", () => state.chatAbort && state.chatAbort.abort());
$("chat-clear").addEventListener("click", () => {
  if (state.chatAbort) state.chatAbort.abort();
  state.messages = [];
  $("chat-log").replaceChildren();
});
$("chat-input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    sendChat();
  }
});

// ---- code: fill in the middle at the cursor -----------------------------------------------
function codeInfo(text) { $("code-info").textContent = text; }

function setCodeBusy(busy) {
  $("complete").disabled = busy;
  code.readOnly = busy;
  code.classList.toggle("busy", busy);
}

// The cursor line's indentation: the middle ends where a later line starts left of it (llama.cpp's n_indent).
function indentAt(prefix, suffix) {
  const line = prefix.slice(prefix.lastIndexOf("\n") + 1) + suffix.split("\n", 1)[0];
  return line.length - line.replace(/^[ \t]+/, "").length;
}

async function complete() {
  if (state.codeAbort) return;
  const start = code.selectionStart, end = code.selectionEnd;
  const before = { value: code.value, start, end };
  const prefix = code.value.slice(0, start), suffix = code.value.slice(end);
  const ctl = new AbortController();
  state.codeAbort = ctl;
  state.insertion = null;
  setCodeBusy(true);
  code.focus();
  codeInfo("completing… (Escape stops)");
  let middle = "";
  try {
    const s = settings();
    let resp = await fetch("/infill", {
      method: "POST", headers: headers(), signal: ctl.signal,
      body: JSON.stringify({ input_prefix: prefix, input_suffix: suffix, input_extra: [], n_indent: indentAt(prefix, suffix),
                             n_predict: s.max_tokens, temperature: s.temperature, stream: true }),
    });
    let note = "";
    if (!resp.ok) {
      const err = await errorOf(resp);
      if (err.code !== "fim_unsupported") throw err;
      // A model without FIM tokens (the embedded SmolLM2 is one) can only continue the text before
      // the cursor: do that, up to the end of the paragraph, and say so.
      note = " (this model has no FIM tokens: it continued the text before the cursor, ignoring what follows)";
      resp = await fetch("/v1/completions", {
        method: "POST", headers: headers(), signal: ctl.signal,
        body: JSON.stringify({ model: state.model, prompt: prefix, max_tokens: s.max_tokens,
                               temperature: s.temperature, stop: ["\n\n"], stream: true }),
      });
      if (!resp.ok) throw await errorOf(resp);
    }
    for await (const event of sse(resp)) {
      const piece = event.content ?? (event.choices && event.choices[0] ? event.choices[0].text : "");
      if (piece) {
        middle += piece;
        code.value = prefix + middle + suffix;
        code.setSelectionRange(prefix.length, prefix.length + middle.length);  // the insertion stays selected
      }
      if (event.stop) break;
    }
    state.insertion = { before, after: code.value, end: prefix.length + middle.length };
    codeInfo((middle ? `inserted ${middle.length} characters: Tab or typing keeps them, Escape undoes`
                     : "the model had nothing to insert here") + note);
  } catch (err) {
    code.value = before.value;
    code.setSelectionRange(before.start, before.end);
    codeInfo(ctl.signal.aborted ? "completion stopped" : "error: " + err.message);
  } finally {
    state.codeAbort = null;
    setCodeBusy(false);
    code.focus();
  }
}

function undoInsertion() {
  const ins = state.insertion;
  state.insertion = null;
  if (!ins || code.value !== ins.after) return;
  code.value = ins.before.value;
  code.setSelectionRange(ins.before.start, ins.before.end);
  codeInfo("completion undone");
}

$("complete").addEventListener("click", complete);
code.addEventListener("keydown", (e) => {
  if (e.ctrlKey && (e.key === " " || e.key === "Enter")) {
    e.preventDefault();
    complete();
  } else if (e.key === "Escape") {
    e.preventDefault();
    if (state.codeAbort) state.codeAbort.abort();
    else undoInsertion();
  } else if (e.key === "Tab" && !e.shiftKey && !e.ctrlKey && !e.altKey && !code.readOnly) {
    e.preventDefault();
    const ins = state.insertion;
    if (ins && code.value === ins.after) {  // accept: the cursor goes after the insertion
      code.setSelectionRange(ins.end, ins.end);
      state.insertion = null;
      codeInfo("completion kept");
    } else {
      code.setRangeText("    ", code.selectionStart, code.selectionEnd, "end");
    }
  }
});

refreshStatus();
