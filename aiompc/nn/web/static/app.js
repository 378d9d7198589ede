// aiompc demo --web: the page. Plain JS, no build step.
// Talks to the local client-party app over the WebSocket /events (JSON events, no polling).
"use strict";

const SIDE = 8;            // the model's input is 1 x 8 x 8, values in [0, 1]
const GRID = 32;           // a drawing becomes a 32x32 bitmap counted in 4x4 blocks (how sklearn's digits were made)
const $ = (id) => document.getElementById(id);

// Exposed for tests and the curious: the exact pixels sent with the last request, the last result.
const state = {
  ws: null, connected: false, running: false,
  pixels: null, source: null, samples: [], steps: [],
  lastSent: null, lastResult: null, lastError: null,
};
window.aiompcDemo = state;

// ------------------------------------------------------------------ formatting

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(2)} MiB`;
}
function secs(s) { return s < 1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`; }
function el(tag, attrs = {}, text = "") {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text) e.textContent = text;
  return e;
}

function showMessage(text, kind = "error") {
  const m = $("message");
  m.textContent = text;
  m.className = `message ${kind}`;
  m.dataset.kind = kind;
  m.hidden = false;
}
function hideMessage() { $("message").hidden = true; $("message").textContent = ""; }

// ------------------------------------------------------------------ drawing and pixels

const canvas = $("canvas");
const ctx = canvas.getContext("2d", { willReadFrequently: true });

function paintPixels(target, pixels) {
  const c = target.getContext("2d");
  const cell = target.width / SIDE;
  c.clearRect(0, 0, target.width, target.height);
  if (!pixels) return;
  for (let i = 0; i < SIDE * SIDE; i++) {
    if (pixels[i] <= 0) continue;
    c.fillStyle = `rgba(17, 17, 17, ${pixels[i]})`;
    c.fillRect((i % SIDE) * cell, Math.floor(i / SIDE) * cell, cell, cell);
  }
}

function setPixels(pixels, source) {
  state.pixels = pixels;
  state.source = source;
  paintPixels($("preview"), pixels);
  $("source").textContent = source || "";
}

// The drawing's ink (alpha) cropped to its bounding box, scaled to fit a 32x32 bitmap (aspect kept,
// centred), thresholded, and counted in 4x4 blocks: 0..16 per cell, divided by 16. null if empty.
function inkToPixels() {
  const { width: w, height: h } = canvas;
  const data = ctx.getImageData(0, 0, w, h).data;
  let x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    if (data[(y * w + x) * 4 + 3] > 32) { if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y; }
  }
  if (x1 < 0) return null;
  const bw = x1 - x0 + 1, bh = y1 - y0 + 1, scale = (GRID - 2) / Math.max(bw, bh);
  const tmp = document.createElement("canvas");
  tmp.width = GRID; tmp.height = GRID;
  const t = tmp.getContext("2d", { willReadFrequently: true });
  t.imageSmoothingEnabled = true;
  t.imageSmoothingQuality = "high";
  const dw = bw * scale, dh = bh * scale;
  t.drawImage(canvas, x0, y0, bw, bh, (GRID - dw) / 2, (GRID - dh) / 2, dw, dh);
  const small = t.getImageData(0, 0, GRID, GRID).data;
  const counts = new Array(SIDE * SIDE).fill(0);
  const block = GRID / SIDE;
  for (let y = 0; y < GRID; y++) for (let x = 0; x < GRID; x++) {
    if (small[(y * GRID + x) * 4 + 3] >= 96) counts[Math.floor(y / block) * SIDE + Math.floor(x / block)] += 1;
  }
  return counts.map((c) => c / (block * block));
}

let drawing = false;
function point(ev) {
  const r = canvas.getBoundingClientRect();
  return [(ev.clientX - r.left) * canvas.width / r.width, (ev.clientY - r.top) * canvas.height / r.height];
}
canvas.addEventListener("pointerdown", (ev) => {
  if (state.source && state.source.startsWith("sample")) clearCanvas();
  drawing = true;
  canvas.setPointerCapture(ev.pointerId);
  const [x, y] = point(ev);
  ctx.lineWidth = 20; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.strokeStyle = "#111";
  ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x + 0.01, y); ctx.stroke();
});
canvas.addEventListener("pointermove", (ev) => {
  if (!drawing) return;
  const [x, y] = point(ev);
  ctx.lineTo(x, y); ctx.stroke();
});
function endStroke() {
  if (!drawing) return;
  drawing = false;
  setPixels(inkToPixels(), "your drawing");
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

function clearCanvas() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  setPixels(null, null);
}
$("clear").addEventListener("click", () => { clearCanvas(); hideMessage(); });

function renderSamples(samples) {
  state.samples = samples;
  const box = $("samples");
  box.textContent = "";
  for (const s of samples) {
    const b = el("button", { type: "button", class: "sample", "data-label": String(s.label),
                             title: `test image #${s.index}, labelled ${s.label}` });
    const c = el("canvas", { width: "40", height: "40" });
    paintPixels(c, s.pixels);
    b.append(c, el("span", {}, `#${s.index}`));
    b.addEventListener("click", () => {
      clearCanvas();
      paintPixels(canvas, s.pixels);
      setPixels(s.pixels.slice(), `sample: test image #${s.index} (label ${s.label})`);
      hideMessage();
    });
    box.append(b);
  }
}

// ------------------------------------------------------------------ the secure inference, live

function setProgress(done, count, note) {
  $("progress-bar").style.width = count ? `${(100 * done) / count}%` : "0";
  $("progress-text").textContent = note;
}

function onStarted(ev) {
  state.steps = ev.steps;
  const body = $("layers").querySelector("tbody");
  body.textContent = "";
  ev.steps.forEach((s, i) => {
    const tr = el("tr", { "data-name": s.name, class: i === 0 ? "running" : "pending" });
    tr.append(el("td", {}, String(i + 1)), el("td", {}, s.name), el("td", { title: s.detail }, s.protocol), el("td", { class: "num" }),
              el("td", { class: "num" }), el("td", { class: "num" }), el("td", { class: "num" }), el("td", { class: "num" }));
    body.append(tr);
  });
  const o = ev.options || {};
  const mode = o.mode ? ` · ${o.mode} mode, ${o.exact === false ? "approximate" : "exact"} rescaling` : "";
  setProgress(0, ev.count, `0 / ${ev.count} steps · connected to ${ev.server}${mode}`);
  $("totals").textContent = "";
}

function onLayer(ev) {
  const rows = $("layers").querySelectorAll("tbody tr");
  const tr = rows[ev.index];
  if (tr) {
    const cells = tr.querySelectorAll("td");
    cells[3].textContent = String(ev.ring);
    cells[4].textContent = bytes(ev.bytes_c2s);
    cells[5].textContent = bytes(ev.bytes_s2c);
    cells[6].textContent = String(ev.rounds);
    cells[7].textContent = secs(ev.seconds);
    tr.className = "done";
  }
  if (rows[ev.index + 1]) rows[ev.index + 1].className = "running";
  setProgress(ev.index + 1, ev.count, `${ev.index + 1} / ${ev.count} steps · ${secs(ev.elapsed)} · last: ${ev.name}`);
  const t = ev.total;
  $("totals").textContent = `so far on this connection: ${bytes(t.bytes_c2s)} sent, ${bytes(t.bytes_s2c)} received, `
    + `${t.rounds} rounds; apart from the layers above: ${bytes(t.offline_bytes)} OT extension (offline) and `
    + `${bytes(t.setup_bytes)} session setup (handshake, the client's HE keys)`;
}

function probRow(cls, secure, plain, top) {
  const tr = el("tr", top ? { class: "top" } : {});
  const bar = (p, extra) => {
    const d = el("div", { class: `bar ${extra}` });
    if (p === null || p === undefined) { d.append(el("span", { class: "pct" }, "—")); return d; }
    const f = el("span", { class: "fill" });
    f.style.width = `${Math.max(1, Math.round(p * 110))}px`;
    d.append(f, el("span", { class: "pct" }, `${(p * 100).toFixed(1)}%`));
    return d;
  };
  const a = el("td"), b = el("td");
  a.append(bar(secure, "secure"));
  b.append(bar(plain, "plain"));
  tr.append(el("td", {}, String(cls)), a, b);
  return tr;
}

function li(list, html) { const e = el("li"); e.innerHTML = html; list.append(e); }

function onResult(ev) {
  state.running = false;
  state.lastResult = ev;
  $("classify").classList.remove("running");
  $("classify").textContent = "Classify privately";
  const box = $("result");
  box.hidden = false;
  $("result-empty").hidden = true;
  box.dataset.prediction = String(ev.prediction);
  box.dataset.pixels = JSON.stringify(ev.pixels);
  $("prediction").textContent = String(ev.prediction);
  const cmp = $("comparison");
  cmp.textContent = "";
  const p = ev.plaintext;
  if (p) {
    const same = p.prediction === ev.prediction;
    cmp.innerHTML = `plaintext model (float, computed here for comparison — a real client would not hold it):
      class <b>${p.prediction}</b> at ${(p.probabilities[p.prediction] * 100).toFixed(1)}%
      <span class="${same ? "ok" : "bad"}">${same ? "same class" : "a different class"}</span><br>`
      + (p.bit_exact === undefined ? "" : `secure logits vs the plaintext integer program: `
      + `<span class="${p.bit_exact ? "ok" : "bad"}">${p.bit_exact ? "equal bit for bit" : "differ"}</span>`);
  } else {
    cmp.textContent = "the server's model is not the bundled one: no plaintext comparison";
  }
  const body = $("probs").querySelector("tbody");
  body.textContent = "";
  const n = ev.probabilities ? ev.probabilities.length : (p ? p.probabilities.length : 0);
  for (let c = 0; c < n; c++) {
    body.append(probRow(c, ev.probabilities ? ev.probabilities[c] : null, p ? p.probabilities[c] : null, c === ev.prediction));
  }
  const s = ev.server_saw;
  const saw = $("server-saw"); saw.textContent = "";
  li(saw, `that a client asked for <b>${s.samples}</b> prediction, and when`);
  li(saw, `<b>${bytes(s.bytes_received)}</b> received in ${s.messages_received} messages — HE ciphertexts and OT messages,
      each encrypted or masked with fresh randomness`);
  li(saw, `<b>${bytes(s.bytes_sent)}</b> sent in ${s.messages_sent} messages, ${s.rounds} rounds, <b>${secs(s.seconds)}</b>`);
  li(saw, `never your pixels, any intermediate activation, the logits or the prediction`);
  const learned = $("client-learned"); learned.textContent = "";
  if (ev.logits) {
    li(learned, `the model's ${ev.logits.length} class scores (logits) on your image, hence the prediction <b>${ev.prediction}</b>`);
  } else {
    li(learned, `the predicted class <b>${ev.prediction}</b> only (the server reveals just the argmax)`);
  }
  li(learned, `the model's public shape (layers, sizes, bit widths), announced in the handshake`);
  li(learned, `nothing about the weights beyond what these scores reveal`);
  const o = ev.options || {};
  const mode = o.mode ? ` · ${o.mode} mode, ${o.exact === false ? "approximate" : "exact"} rescaling` : "";
  setProgress(ev.steps, ev.steps, `done: ${ev.steps} / ${ev.steps} steps in ${secs(s.seconds)}${mode}`);
  showMessage(`Classified privately as ${ev.prediction}.`, "info");
}

function onError(ev) {
  state.lastError = ev;
  if (ev.kind === "busy") {  // someone else's inference (another tab) is running; ours never started
    state.running = false;
    $("classify").classList.remove("running");
    $("classify").textContent = "Classify privately";
    showMessage(`The model is busy: ${ev.message}.`, "warn");
    return;
  }
  state.running = false;
  $("classify").classList.remove("running");
  $("classify").textContent = "Classify privately";
  const running = $("layers").querySelector("tbody tr.running");
  if (running) running.className = "failed";
  const prefix = { input: "Bad input", unreachable: "Model server unreachable", "server-died": "The model server went away",
                   handshake: "The model server refused the session" }[ev.kind] || "Error";
  showMessage(`${prefix}: ${ev.message}`, "error");
  setProgress(0, 0, `failed (${ev.kind})`);
}

// ------------------------------------------------------------------ the button and the connection

$("classify").addEventListener("click", () => {
  if (state.running) {
    showMessage("An inference is already running — wait for its prediction before asking again.", "warn");
    return;
  }
  if (!state.connected) {
    showMessage("Not connected to the local demo app (is `aiompc demo --web` still running?).", "error");
    return;
  }
  if (!state.pixels || !state.pixels.some((v) => v > 0)) {
    showMessage("The canvas is empty: draw a digit or pick a sample first.", "warn");
    return;
  }
  state.running = true;
  state.lastSent = state.pixels.slice();
  state.lastResult = null;
  state.lastError = null;
  hideMessage();
  $("classify").classList.add("running");
  $("classify").textContent = "Classifying…";
  state.ws.send(JSON.stringify({ type: "classify", pixels: state.lastSent }));
});

function connect() {
  const ws = new WebSocket(`ws://${location.host}/events`);
  state.ws = ws;
  ws.addEventListener("open", () => { state.connected = true; });
  ws.addEventListener("message", (msg) => {
    const ev = JSON.parse(msg.data);
    if (ev.type === "hello") {
      renderSamples(ev.samples);
      $("server-info").textContent = ev.local_server
        ? `Model server: started in-process by the demo at ${ev.server} (same machine, real WebSocket connection).`
        : `Model server: ${ev.server}`;
      document.body.dataset.ready = "true";
    } else if (ev.type === "started") onStarted(ev);
    else if (ev.type === "layer") onLayer(ev);
    else if (ev.type === "result") onResult(ev);
    else if (ev.type === "error") onError(ev);
  });
  ws.addEventListener("close", () => {
    state.connected = false;
    if (state.running) onError({ kind: "app", message: "lost the connection to the local demo app mid-inference" });
    else showMessage("Lost the connection to the local demo app (is `aiompc demo --web` still running?). Reload to retry.", "error");
  });
}

connect();
