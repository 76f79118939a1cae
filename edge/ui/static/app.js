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
    document.getElementById("last").textContent = status.last_decision ? "Last: " + describe(status.last_decision) : "No decision yet.";
    if (status.threshold !== undefined) {
      document.getElementById("threshold-now").textContent = status.threshold.toFixed(2);
      if (!sliderTouched) slider.value = status.threshold;
    }
  } catch (error) { text("state", "daemon unreachable", "bad"); }
}

function cell(row, content) {
  const td = row.insertCell();
  if (content instanceof Node) td.appendChild(content); else td.textContent = content;
}

async function refreshDecisions() {
  try {
    const decisions = await (await fetch("/api/decisions", { cache: "no-store" })).json();
    const body = document.getElementById("decisions");
    body.replaceChildren();
    for (const d of decisions) {
      if (filter.value === "reject" && d.label !== "reject") continue;
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
    }
  } catch (error) { /* the status badge says so */ }
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
  const response = await fetch("/api/review", { cache: "no-store" });
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

filter.addEventListener("change", refreshDecisions);
refreshReview();
setInterval(refreshReview, 3000);
refreshFrame();
refreshStatus();
refreshDecisions();
setInterval(refreshStatus, 1000);
setInterval(refreshDecisions, 1000);
refreshWhatIf();
setInterval(refreshWhatIf, 2000);
