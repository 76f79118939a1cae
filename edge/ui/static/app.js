// The commissioning page: the live frame refreshed a few times a second, status and decisions each second.
"use strict";

const live = document.getElementById("live");
const filter = document.getElementById("filter");

function refreshFrame() {
  const next = new Image();
  next.onload = () => { live.src = next.src; setTimeout(refreshFrame, 300); };
  next.onerror = () => setTimeout(refreshFrame, 1000);
  next.src = "/snapshot.jpg?t=" + Date.now();
}

function text(id, value, cls) {
  const element = document.getElementById(id);
  element.textContent = value;
  if (cls !== undefined) element.className = "badge " + cls;
}

function describe(d) {
  const why = d.reason ? ` (${d.reason})` : "";
  return `${d.item_id} → lane ${d.lane}: ${d.label}${why}, confidence ${d.confidence.toFixed(2)}`;
}

async function refreshStatus() {
  try {
    const status = await (await fetch("/api/status", { cache: "no-store" })).json();
    text("device", status.device || "");
    text("state", status.paused ? "paused" : (status.state || "starting"), status.paused ? "bad" : "ok");
    text("camera", "camera " + (status.camera || "?"), status.camera === "streaming" ? "ok" : "bad");
    text("model", status.model || "");
    for (const label of status.labels || []) {  // the filter offers the live model's labels
      if (![...filter.options].some((o) => o.value === label)) filter.add(new Option(label, label));
    }
    text("belt", status.belt ? `Now: ${status.belt}.` : "");
    showMotionBlur(status.line || {});
    showLineFigures(status);
    document.getElementById("last").textContent = status.last_decision ? "Last: " + describe(status.last_decision) : "No decision yet.";
    if (status.threshold !== undefined) {
      document.getElementById("threshold-now").textContent = status.threshold.toFixed(2);
      if (!sliderTouched) slider.value = status.threshold;
    }
  } catch (error) { text("state", "daemon unreachable", "bad"); }
}

function counts(c) {
  return c ? `${c.right} / ${c.reject} / ${c.wrong}` : "–";
}

// How far the belt moves while the camera exposes a frame (edge/motion_blur.py): over two pixels costs right lanes.
const SHARP_PX = 2;

function showMotionBlur(line) {
  const element = document.getElementById("motion-blur");
  if (line.motion_blur_px === undefined || line.motion_blur_px === null) { element.textContent = ""; return; }
  const smear = `Motion blur: the belt moves about ${line.motion_blur_px} px along the travel while a frame is exposed.`;
  if (line.motion_blur_px <= SHARP_PX) { element.textContent = smear; element.className = "muted"; return; }
  const speed = line.belt_speed_px_s;
  const exposure = speed ? ` Set the camera's exposure to 1/${Math.ceil(speed / SHARP_PX)} s or shorter (${SHARP_PX} px at ${Math.round(speed)} px/s), with more light if needed:` : " Shorten the camera's exposure:";
  element.textContent = `${smear}${exposure} a smeared item is classified worse (README, "The camera: pixels and exposure").`;
  element.className = "warning";
}

let shownLine = null;

function showLineFigures(status) {  // the trainer's before/after, and the last rollout's check on this device
  const rows = [];
  const trained = status.line_figures;
  if (trained && trained.model) {
    rows.push([`when trained (line ${trained.line})`, trained.crops.test, counts(trained.model),
      trained.before ? `${counts(trained.before)} (${trained.before.bundle})` : "–"]);
  }
  const check = status.rollout && status.rollout.line_check;
  if (check && check.crops) {
    const verdict = check.worse ? (check.forced ? " worse, forced" : " worse, refused") : "";
    rows.push([`last rollout, on this device${verdict}`, check.crops, counts(check.candidate), counts(check.live)]);
  }
  const shown = JSON.stringify(rows);
  if (!rows.length || shown === shownLine) return;
  shownLine = shown;
  const body = document.getElementById("line-figures");
  body.replaceChildren();
  for (const values of rows) {
    const row = body.insertRow();
    for (const value of values) cell(row, String(value));
  }
}

function cell(row, content) {
  const td = row.insertCell();
  if (content instanceof Node) td.appendChild(content); else td.textContent = content;
}

let shownDecisions = null;  // run, newest seq and filter of the table on screen

async function refreshDecisions() {
  try {
    const decisions = await (await fetch("/api/decisions", { cache: "no-store" })).json();
    const shown = decisions.length ? `${decisions[0].run_id}:${decisions[0].seq} ${filter.value}` : "";
    if (shown === shownDecisions) return;  // nothing new: keep the table (and any button being pressed)
    shownDecisions = shown;
    const body = document.getElementById("decisions");
    body.replaceChildren();
    for (const d of decisions) {
      if (filter.value && d.label !== filter.value) continue;
      const row = body.insertRow();
      row.className = d.label === "reject" ? "reject" : "";
      row.dataset.item = d.item_id;
      const img = document.createElement("img");
      if (d.crop_url) { img.src = d.crop_url; img.alt = "the crop the model saw"; }
      cell(row, d.crop_url ? img : "–");
      cell(row, d.item_id);
      cell(row, d.label + (d.reason ? ` (${d.reason})` : ""));
      cell(row, String(d.lane));
      cell(row, d.confidence.toFixed(2));
      cell(row, Object.entries(d.scores).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", "));
      cell(row, d.latency_ms === null ? "–" : `${Math.round(d.latency_ms)} ms`);
      cell(row, d.crop_url ? reviewButton(d.item_id) : "");
    }
  } catch (error) { /* the status badge says so */ }
}

// A decision's crop joins the crops to label (a confident wrong lane is the example most worth a label).
function reviewButton(itemId) {
  const button = document.createElement("button");
  button.textContent = "label it";
  button.title = "send this crop to Review below";
  button.addEventListener("click", async () => {
    const response = await fetch("/api/crops/" + encodeURIComponent(itemId), { method: "POST" });
    if (!response.ok) { alert((await response.json()).error); return; }
    refreshReview();
  });
  return button;
}

// Threshold what-if: the kept decisions decided again at the slider's threshold.
const slider = document.getElementById("threshold");
let sliderTouched = false;

async function refreshWhatIf() {
  document.getElementById("threshold-value").textContent = Number(slider.value).toFixed(2);
  const response = await fetch("/api/what-if?threshold=" + slider.value, { cache: "no-store" });
  if (!response.ok) return;
  const result = await response.json();
  const body = document.getElementById("what-if");
  body.replaceChildren();
  for (const [label, counts] of Object.entries(result.per_label)) {
    const row = body.insertRow();
    row.dataset.label = label;
    for (const value of [label, counts.unchanged, counts.to_reject, counts.from_reject]) cell(row, String(value));
  }
}

slider.addEventListener("input", () => { sliderTouched = true; refreshWhatIf(); });

// Review: select unsure crops, give them a label.
const selected = new Set();
let labels = [];

async function refreshReview() {
  const response = await fetch("/api/crops", { cache: "no-store" });
  const box = document.getElementById("review");
  if (!response.ok) {
    document.getElementById("review-note").textContent = await response.text();
    return;
  }
  const review = await response.json();
  if (labels.join() !== review.labels.join()) {
    labels = review.labels;
    const buttons = document.getElementById("label-buttons");
    buttons.replaceChildren();
    labels.forEach((label, index) => {
      const button = document.createElement("button");
      button.textContent = `${index + 1}: label selected as ${label}`;
      button.dataset.label = label;
      button.addEventListener("click", () => labelSelected(label));
      buttons.appendChild(button);
    });
  }
  const ids = new Set(review.crops.map((c) => c.id));
  for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
  box.replaceChildren();
  for (const crop of review.crops) {
    const figure = document.createElement("figure");
    figure.dataset.crop = crop.id;
    figure.className = selected.has(crop.id) ? "selected" : "";
    const img = document.createElement("img");
    img.src = crop.url;
    img.alt = `unsure crop of ${crop.item_id}`;
    const caption = document.createElement("figcaption");
    caption.textContent = `${crop.model_said} ${crop.confidence.toFixed(2)}`;
    figure.append(img, caption);
    figure.addEventListener("click", () => {
      if (selected.has(crop.id)) selected.delete(crop.id); else selected.add(crop.id);
      figure.className = selected.has(crop.id) ? "selected" : "";
    });
    box.appendChild(figure);
  }
}

async function labelSelected(label) {
  if (!selected.size) return;
  const response = await fetch("/api/labels", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ crops: [...selected], label: label }),
  });
  if (!response.ok) alert((await response.json()).error);
  selected.clear();
  refreshReview();
}

document.addEventListener("keydown", (event) => {
  const index = Number(event.key) - 1;
  if (index >= 0 && index < labels.length) labelSelected(labels[index]);
});

// ROI editor: drag on the live frame, then keep it; the daemon applies it once nothing is in view.
const frameBox = document.getElementById("live-frame");
const drawn = document.getElementById("roi-drawn");
let dragStart = null;
let proposal = null;  // {x, y, width, height} as fractions of the frame

function fractionAt(event) {
  const rect = live.getBoundingClientRect();
  const clamp = (v) => Math.min(1, Math.max(0, v));
  return { x: clamp((event.clientX - rect.left) / rect.width), y: clamp((event.clientY - rect.top) / rect.height) };
}

function showProposal() {
  drawn.hidden = proposal === null;
  document.getElementById("roi-save").hidden = proposal === null;
  document.getElementById("roi-cancel").hidden = proposal === null;
  if (proposal === null) return;
  const percent = (v) => (100 * v).toFixed(2) + "%";
  Object.assign(drawn.style, {
    left: percent(proposal.x), top: percent(proposal.y), width: percent(proposal.width), height: percent(proposal.height),
  });
}

frameBox.addEventListener("pointerdown", (event) => {
  if (marking !== null) { markBelt(fractionAt(event)); return; }
  dragStart = fractionAt(event);
  frameBox.setPointerCapture(event.pointerId);
});
frameBox.addEventListener("pointermove", (event) => {
  if (dragStart === null) return;
  const at = fractionAt(event);
  proposal = {
    x: Math.min(dragStart.x, at.x), y: Math.min(dragStart.y, at.y),
    width: Math.abs(at.x - dragStart.x), height: Math.abs(at.y - dragStart.y),
  };
  showProposal();
});
frameBox.addEventListener("pointerup", () => {
  dragStart = null;
  if (proposal !== null && (proposal.width < 0.02 || proposal.height < 0.02)) proposal = null;  // a click
  showProposal();
});

// A change the page asks for: [ok, the JSON answer].
async function send(path, method, body) {
  const response = await fetch(path, {
    method: method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return [response.ok, await response.json()];
}

async function sendRoi(method, body) {
  const [ok, answer] = await send("/api/roi", method, body);
  if (!ok) { alert(answer.error); return; }
  proposal = null;
  showProposal();
  showRoi(answer);
}

function showRoi(state) {
  const where = state.source === "page" ? `drawn on this page${state.kept_in ? ", kept in " + state.kept_in : ", kept until the daemon stops"}`
    : state.source === "config" ? "from the config (camera.roi)" : "the whole frame (no camera.roi)";
  const waiting = state.pending ? " A new region waits for the belt to be empty." : "";
  const problem = state.problem ? " " + state.problem : "";
  text("roi-state", `Region: ${where}.${waiting}${problem}`);
  document.getElementById("roi-reset").hidden = state.source !== "page" && !(state.pending && state.pending.roi);
}

async function refreshRoi() {
  try { showRoi(await (await fetch("/api/roi", { cache: "no-store" })).json()); } catch (error) { /* status says */ }
}

document.getElementById("roi-save").addEventListener("click", () => sendRoi("POST", proposal));
document.getElementById("roi-cancel").addEventListener("click", () => { proposal = null; showProposal(); });
document.getElementById("roi-reset").addEventListener("click", () => sendRoi("DELETE"));

// Belt calibration: click the reference line, or mark two points a known length apart (the scale, mm/px).
let marking = null;  // "reference", "scale" or null (a drag draws a region)
let scaleFrom = null;

function hint(message) { text("belt-hint", message); }

async function sendBelt(method, body) {
  const [ok, answer] = await send("/api/belt", method, body);
  if (!ok) { hint(answer.error); return; }
  hint("");
  showBelt(answer);
}

function markBelt(point) {
  if (marking === "reference") {
    marking = null;
    sendBelt("POST", { reference: point });
  } else if (scaleFrom === null) {
    scaleFrom = point;
    hint("Now click the other end of the known length.");
  } else {
    const mm = Number(document.getElementById("scale-mm").value);
    marking = null;
    sendBelt("POST", { scale: { from: scaleFrom, to: point, mm: mm } });
    scaleFrom = null;
  }
}

function showBelt(state) {
  const from = (name) => (state.from_page.includes(name) ? "set on this page" : "from the config");
  const scale = state.mm_per_px === null ? "no scale (belt speed in px/s only)"
    : `${state.mm_per_px.toFixed(3)} mm per pixel (${from("mm_per_px")})`;
  const problem = state.problem ? " " + state.problem : "";
  text("belt-state",
    `Reference line at ${state.reference_line.toFixed(2)} of the region along the travel (${from("reference_line")}); ${scale}.${problem}`);
  document.getElementById("belt-reset").hidden = state.from_page.length === 0;
}

async function refreshBelt() {
  try { showBelt(await (await fetch("/api/belt", { cache: "no-store" })).json()); } catch (error) { /* status says */ }
}

document.getElementById("reference-place").addEventListener("click", () => {
  marking = "reference";
  hint("Click on the frame where the line across the belt should be.");
});
document.getElementById("scale-measure").addEventListener("click", () => {
  if (!(Number(document.getElementById("scale-mm").value) > 0)) { hint("Enter the known length in mm first."); return; }
  marking = "scale";
  scaleFrom = null;
  hint("Click one end of the known length on the frame.");
});
document.getElementById("belt-reset").addEventListener("click", () => sendBelt("DELETE"));

// Stats: one point per stats message (mqtt.stats_interval_s), plotted with uPlot (static/vendor).
const plots = {};

function plot(id, title, series) {
  const element = document.getElementById(id);
  return new uPlot({
    title: title, width: element.clientWidth || 320, height: 180,
    series: [{}, ...series.map(([label, stroke]) => ({ label: label, stroke: stroke, spanGaps: true }))],
    axes: [{}, { size: 50 }],
  }, [[]].concat(series.map(() => [])), element);
}

async function refreshStats() {
  const response = await fetch("/api/stats", { cache: "no-store" });
  if (!response.ok) return;
  const points = await response.json();
  if (!points.length) return;
  if (!plots.fps) {
    plots.fps = plot("plot-fps", "frames per second", [["fps", "#1565c0"]]);
    plots.inference = plot("plot-inference", "classification (ms)", [["p50", "#2e7d32"], ["p99", "#c62828"]]);
    plots.latency = plot("plot-latency", "decision latency (ms)", [["p50", "#2e7d32"], ["p99", "#c62828"]]);
  }
  const t = points.map((p) => p.t);
  plots.fps.setData([t, points.map((p) => p.fps)]);
  plots.inference.setData([t, points.map((p) => p.inference_ms.p50), points.map((p) => p.inference_ms.p99)]);
  plots.latency.setData([t, points.map((p) => p.latency_ms.p50), points.map((p) => p.latency_ms.p99)]);
  const last = points[points.length - 1], first = points[0];
  const broker = last.broker_error ? `broker: ${last.broker_error}` : "broker connected";
  const camera = last.camera_error ? `camera ${last.camera}: ${last.camera_error}` : `camera ${last.camera}`;
  text("stats-state", `${camera}; ${broker}; ${last.queue_depth} decision(s) queued for the broker.`);
  const body = document.getElementById("per-label");
  body.replaceChildren();
  for (const [label, count] of Object.entries(last.decisions).sort()) {
    const row = body.insertRow();
    row.dataset.label = label;
    for (const value of [label, count, count - (first.decisions[label] || 0)]) cell(row, String(value));
  }
}

filter.addEventListener("change", refreshDecisions);
refreshStats();
setInterval(refreshStats, 5000);
refreshRoi();
setInterval(refreshRoi, 2000);
refreshBelt();
setInterval(refreshBelt, 2000);
refreshReview();
setInterval(refreshReview, 3000);
refreshFrame();
refreshStatus();
refreshDecisions();
setInterval(refreshStatus, 1000);
setInterval(refreshDecisions, 1000);
refreshWhatIf();
setInterval(refreshWhatIf, 2000);
