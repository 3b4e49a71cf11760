// llm-router operator console. Plain JavaScript, no build step, nothing from the network.
// Live view: an EventSource on P/ui/api/events (one snapshot a second; the server ends each
// stream after a while and the browser reconnects). Rows are built once per provider and only
// changed cells are written, so 50 models x 10 providers stay cheap to update.
"use strict";

(function () {
  const PREFIX = document.body.dataset.prefix || "";
  const API = PREFIX + "/ui/api";
  const CSRF = { "X-LLM-Router-Console": "1" };
  const $ = (id) => document.getElementById(id);
  const state = { source: null, snapshot: null, rows: new Map(), models: new Map(),
                  recentTimer: null, recent: [], play: null, renderMs: [] };

  // -- helpers ---------------------------------------------------------------------------------
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function setText(node, text) { if (node.textContent !== text) node.textContent = text; }
  function num(v, digits) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); }
  function secs(v) { return v === null || v === undefined ? "–" : "≤" + fmtSeconds(v); }
  function fmtSeconds(v) { return v < 1 ? Math.round(v * 1000) + "ms" : v + "s"; }
  function when(t) { return t ? new Date(t * 1000).toLocaleTimeString() : "–"; }
  function notice(text) { setText($("notice"), text || ""); }

  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: { ...CSRF } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(API + path, init);
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (res.status === 401 && path !== "/session") showSignIn("Your session ended; sign in again.");
    if (!res.ok) {
      const message = data && data.error ? (data.error.message || data.error) : res.statusText;
      throw new Error(message);
    }
    return data;
  }

  // -- sign-in ---------------------------------------------------------------------------------
  function showSignIn(message) {
    stopLive();
    $("app").hidden = true;
    $("status").hidden = true;
    $("sign-in").hidden = false;
    setText($("sign-in-error"), message || "");
    $("token").focus();
  }
  function showApp() {
    $("sign-in").hidden = true;
    $("app").hidden = false;
    $("status").hidden = false;
    startLive();
  }
  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("token").value;
    $("token").value = "";
    try {
      await api("POST", "/session", { token });
      showApp();
    } catch (e) {
      setText($("sign-in-error"), "Sign-in refused: " + e.message);
    }
  });
  $("sign-out").addEventListener("click", async () => {
    try { await api("DELETE", "/session"); } catch (e) { /* signed out anyway */ }
    showSignIn("Signed out.");
  });

  // -- live view -------------------------------------------------------------------------------
  function startLive() {
    stopLive();
    const source = new EventSource(API + "/events");
    state.source = source;
    source.onopen = () => setLive(true);
    source.onmessage = (event) => render(JSON.parse(event.data));
    source.onerror = async () => {
      setLive(false);
      if (source.readyState === EventSource.CLOSED) {  // refused, not just the stream's end
        try { await api("GET", "/session"); setTimeout(startLive, 1000); }
        catch (e) { /* showSignIn ran */ }
      }
    };
  }
  function stopLive() {
    if (state.source) state.source.close();
    state.source = null;
  }
  function setLive(on) {
    const pill = $("live");
    setText(pill, on ? "● live" : "○ reconnecting");
    pill.dataset.live = on ? "1" : "0";
  }

  const COLUMNS = [
    ["provider", "Provider"], ["state", "State"], ["inflight", "In flight / cap"],
    ["rpm", "Req/min"], ["epm", "Err/min"], ["lat", "Latency p50 / p95"],
    ["ttft", "TTFT p50 / p95"], ["weight", "Weight static / runtime"], ["load", "Load"],
    ["prefix", "Prefix hits"], ["actions", "Actions"]];
  const NUMERIC = new Set(["inflight", "rpm", "epm", "lat", "ttft", "weight", "prefix"]);
  const SYMBOL = { healthy: "✓ healthy", cooling: "✗ cooling", unreachable: "? unreachable",
                   drained: "‖ drained", "half-open": "◐ half-open (trial)" };

  function modelBlock(name) {
    let block = state.models.get(name);
    if (block) return block;
    const section = el("section", { class: "model", "data-model": name });
    const head = el("h2");
    const title = el("span", {}, name);
    const health = el("span", { class: "muted" });
    head.append(title, " ", health);
    const table = el("table", { class: "grid" });
    const tr = el("tr");
    for (const [, label] of COLUMNS) tr.append(el("th", { scope: "col" }, label));
    table.append(el("thead"), el("tbody"));
    table.tHead.append(tr);
    const wrap = el("div", { class: "scroll" });
    wrap.append(table);
    section.append(head, wrap);
    $("models").append(section);
    block = { section, health, body: table.tBodies[0] };
    state.models.set(name, block);
    return block;
  }

  function providerRow(model, p, block) {
    const key = model + "\u0000" + p.id;
    let row = state.rows.get(key);
    if (row) return row;
    const tr = el("tr", { "data-provider": p.id });
    const cells = {};
    for (const [name, label] of COLUMNS) {
      const td = el("td", { "data-label": label, "data-col": name });
      if (NUMERIC.has(name)) td.className = "num";
      cells[name] = td;
      tr.append(td);
    }
    cells.provider.append(el("span", { class: "mono" }, p.id), " ",
                          el("span", { class: "muted small" }, p.api_type));
    const drain = el("button", { type: "button", "data-act": "drain" });
    const weight = el("button", { type: "button", "data-act": "weight" }, "Weight…");
    drain.addEventListener("click", () => toggleDrain(row.p));
    weight.addEventListener("click", () => changeWeight(model, row.p));
    cells.actions.className = "actions";
    cells.actions.append(drain, " ", weight);
    block.body.append(tr);
    row = { tr, cells, drain, weight, p };
    state.rows.set(key, row);
    return row;
  }

  function stateText(p) {
    let text = SYMBOL[p.state] || p.state;
    if (p.state === "cooling" && p.cooldown_remaining !== null) {
      text += " " + Math.ceil(p.cooldown_remaining) + "s left";
    }
    return text;
  }

  function loadText(load) {
    if (!load) return "not known";
    return Object.entries(load).map(([k, v]) => k + " " + (typeof v === "number"
      ? Number(v.toFixed(2)) : v)).join(", ");
  }

  function render(snap) {
    const started = performance.now();
    state.snapshot = snap;
    setText($("strategy"), snap.strategy);
    setText($("config-hash"), (snap.config.sha256 || "–").slice(0, 12));
    $("config-hash").title = snap.config.sha256 || "";
    setText($("config-time"), when(snap.config.loaded_at));
    setText($("config-reload"), snap.config.last_reload ? when(snap.config.last_reload) : "none yet");
    $("reload").hidden = !snap.config.can_reload;
    const filter = $("pool-filter").value.trim().toLowerCase();
    const seen = new Set();
    let providers = 0, down = 0;
    for (const m of snap.models) {
      const block = modelBlock(m.name);
      seen.add(m.name);
      let shown = 0;
      for (const p of m.providers) {
        const row = providerRow(m.name, p, block);
        seen.add(m.name + "\u0000" + p.id);
        row.p = p;
        providers += 1;
        if (p.state !== "healthy") down += 1;
        updateRow(row, p, snap.runtime_weights);
        const match = !filter || m.name.toLowerCase().includes(filter)
          || p.id.toLowerCase().includes(filter);
        row.tr.hidden = !match;
        if (match) shown += 1;
      }
      block.section.hidden = shown === 0;
      setText(block.health, m.healthy ? "✓ serving" : "✗ no healthy provider");
    }
    for (const [key, row] of state.rows) if (!seen.has(key)) { row.tr.remove(); state.rows.delete(key); }
    for (const [key, block] of state.models) if (!seen.has(key)) { block.section.remove(); state.models.delete(key); }
    setText($("pool-summary"), snap.models.length + " models, " + providers + " providers, "
      + down + " not healthy · updated " + when(snap.time));
    fillModels(snap);
    const ms = performance.now() - started;
    state.renderMs.push(ms);
    if (state.renderMs.length > 60) state.renderMs.shift();
    setText($("render-ms"), ms.toFixed(1));
    // Exposed for the browser tests, which measure the cost of an update at scale.
    document.body.dataset.renderMs = ms.toFixed(2);
    if (!document.body.dataset.renderFirstMs) document.body.dataset.renderFirstMs = ms.toFixed(2);
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  }

  function updateRow(row, p, runtimeWeights) {
    const c = row.cells;
    setText(c.state, stateText(p));
    c.state.className = "state-" + p.state.replace("-", "");
    row.tr.classList.toggle("drained", p.drained);
    setText(c.inflight, p.in_flight + " / " + (p.max_concurrency === null ? "∞" : p.max_concurrency));
    setText(c.rpm, num(p.requests_per_min, 1));
    setText(c.epm, num(p.errors_per_min, 1));
    setText(c.lat, secs(p.latency_p50) + " / " + secs(p.latency_p95));
    setText(c.ttft, secs(p.ttft_p50) + " / " + secs(p.ttft_p95));
    setText(c.weight, p.weight + " / " + (p.runtime_weight === null ? "–" : p.runtime_weight)
      + (p.effective_weight === null ? "" : " (eff. " + p.effective_weight + ")"));
    setText(c.load, loadText(p.load));
    setText(c.prefix, p.prefix_hit_ratio === null || p.prefix_hit_ratio === undefined
      ? "not known" : Math.round(p.prefix_hit_ratio * 100) + "%");
    setText(row.drain, p.drained ? "Undrain" : "Drain");
    row.weight.hidden = !runtimeWeights;
  }

  // -- actions ---------------------------------------------------------------------------------
  async function toggleDrain(p) {
    const undrain = p.drained;
    const question = undrain
      ? "Undrain provider " + p.id + "? It takes new requests again."
      : "Drain provider " + p.id + "? It gets no new requests (under any strategy, on every "
        + "worker and instance); requests already on it finish.";
    if (!window.confirm(question)) return;
    try {
      const r = await api("POST", "/providers/" + encodeURIComponent(p.id)
                                  + (undrain ? "/undrain" : "/drain"));
      notice((undrain ? "Undrained " : "Drained ") + r.provider + " (" + r.in_flight + " in flight).");
    } catch (e) { notice("✗ " + e.message); }
  }

  async function changeWeight(model, p) {
    const current = p.runtime_weight === null ? p.weight : p.runtime_weight;
    const answer = window.prompt("Runtime weight of " + p.id + " for model " + model
                                 + " (static " + p.weight + ")", String(current));
    if (answer === null) return;
    const weight = Number(answer);
    if (!(weight > 0)) { notice("✗ the weight must be a positive number"); return; }
    if (!window.confirm("Set the runtime weight of " + p.id + " (" + model + ") to " + weight + "?")) return;
    try {
      await api("PUT", "/weights", { model, provider: p.id, weight });
      notice("Runtime weight of " + p.id + " is now " + weight + ".");
    } catch (e) { notice("✗ " + e.message); }
  }

  $("reload").addEventListener("click", async () => {
    if (!window.confirm("Reload the configuration on every worker and instance?")) return;
    try {
      const r = await api("POST", "/reload");
      notice("Reloaded: config " + String(r.sha256 || "").slice(0, 12) + " (generation "
             + r.generation + ") on every worker and instance.");
    } catch (e) { notice("✗ reload refused: " + e.message); }
  });

  // -- recent requests -------------------------------------------------------------------------
  async function loadRecent() {
    try {
      const data = await api("GET", "/recent");
      state.recent = data.requests;
      renderRecent();
    } catch (e) { notice("✗ " + e.message); }
  }
  function renderRecent() {
    const filter = $("recent-filter").value.trim().toLowerCase();
    const body = $("recent-table").tBodies[0];
    const labels = Array.from($("recent-table").tHead.rows[0].cells, (c) => c.textContent);
    const rows = [];
    for (const r of state.recent) {
      const values = [when(r.time), r.request_id, (r.method || "") + " " + (r.route || ""),
        r.key || "–", r.model || "–", r.provider || "–", String(r.status),
        r.duration_ms === null ? "–" : Math.round(r.duration_ms) + " ms",
        (r.tokens_in === null ? "–" : r.tokens_in) + " / " + (r.tokens_out === null ? "–" : r.tokens_out)];
      if (filter && !values.join(" ").toLowerCase().includes(filter)) continue;
      const tr = el("tr");
      values.forEach((v, i) => tr.append(el("td", { "data-label": labels[i] }, v)));
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    setText($("recent-summary"), rows.length + " of " + state.recent.length + " shown");
  }
  $("recent-filter").addEventListener("input", renderRecent);
  $("pool-filter").addEventListener("input", () => state.snapshot && render(state.snapshot));

  // -- tabs ------------------------------------------------------------------------------------
  for (const button of document.querySelectorAll(".tabs button")) {
    button.addEventListener("click", () => {
      for (const b of document.querySelectorAll(".tabs button")) {
        const on = b === button;
        b.setAttribute("aria-selected", String(on));
        $(b.dataset.tab).hidden = !on;
      }
      clearInterval(state.recentTimer);
      if (button.dataset.tab === "recent") {
        loadRecent();
        state.recentTimer = setInterval(loadRecent, 2000);
      }
    });
  }

  // -- playground: a streamed chat through the normal path --------------------------------------
  function fillModels(snap) {
    const select = $("play-model");
    const names = snap.models.map((m) => m.name);
    if (Array.from(select.options, (o) => o.value).join("\u0000") === names.join("\u0000")) return;
    const chosen = select.value;
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(chosen)) select.value = chosen;
  }

  $("play-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const output = $("play-output");
    output.textContent = "";
    const controller = new AbortController();
    state.play = controller;
    $("play-send").disabled = true;
    $("play-stop").disabled = false;
    const started = performance.now();
    let chunks = 0;
    setText($("play-status"), "… waiting for the first token");
    try {
      const res = await fetch("/v1/chat/completions", {
        method: "POST", credentials: "same-origin", signal: controller.signal,
        headers: { "Content-Type": "application/json", ...CSRF },
        body: JSON.stringify({ model: $("play-model").value, stream: true,
                               messages: [{ role: "user", content: $("play-prompt").value }] }),
      });
      if (!res.ok) {
        const data = await res.json().catch(() => null);
        throw new Error(res.status + " " + (data && data.error ? data.error.message : res.statusText));
      }
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        const lines = buffer.split("\n");
        buffer = lines.pop();
        for (const line of lines) {
          if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
          const frame = JSON.parse(line.slice(6));
          if (frame.error) throw new Error(frame.error.message || "stream failed");
          const delta = frame.choices && frame.choices[0] && frame.choices[0].delta;
          if (delta && delta.content) { output.textContent += delta.content; chunks += 1; }
          setText($("play-status"), "▶ streaming… " + chunks + " chunks");
        }
      }
      setText($("play-status"), "✓ done: " + chunks + " chunks in "
        + Math.round(performance.now() - started) + " ms (request " + res.headers.get("X-Request-ID") + ")");
    } catch (e) {
      setText($("play-status"), e.name === "AbortError" ? "■ stopped" : "✗ " + e.message);
    } finally {
      $("play-send").disabled = false;
      $("play-stop").disabled = true;
      state.play = null;
    }
  });
  $("play-stop").addEventListener("click", () => state.play && state.play.abort());

  // -- start -----------------------------------------------------------------------------------
  api("GET", "/session").then(showApp, () => showSignIn(""));
})();
