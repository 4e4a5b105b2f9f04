"use strict";
// The try-it page: the prediction comes from POST /invocations, the feature maps and filters from
// POST /explain, both answered by the server that serves this page. Nothing is fetched elsewhere.

const $ = (id) => document.getElementById(id);
const MB = 1024 * 1024;
let payloadLimitMb = null;  // from GET /about: an upload over it is refused before it is sent
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

function viridis(t) {
  const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const f = x - i;
  return VIRIDIS[i].map((c, k) => Math.round(c + f * (VIRIDIS[i + 1][k] - c)));
}

function diverging(t) {  // -1 blue .. 0 white .. +1 red
  const a = Math.min(Math.abs(t), 1);
  return t >= 0 ? [255, Math.round(255 * (1 - a)), Math.round(255 * (1 - a))]
                : [Math.round(255 * (1 - a)), Math.round(255 * (1 - a)), 255];
}

// Draw a 2-D array of numbers into a canvas at one pixel per value.
function paint(canvas, grid, color) {
  const h = grid.length, w = grid[0].length;
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  grid.forEach((row, y) => row.forEach((v, x) => {
    const [r, g, b] = color(v);
    img.data.set([r, g, b, 255], 4 * (y * w + x));
  }));
  ctx.putImageData(img, 0, 0);
}

function range(grid) {
  const flat = grid.flat();
  return [Math.min(...flat), Math.max(...flat)];
}

function showError(document_, status) {
  const box = $("error");
  const reason = document_.error || "error";
  box.textContent = `${document_.status || status} ${reason}: ${document_.message || "the server gave no reason"}`;
  box.hidden = false;
  $("answer").hidden = true;
  $("waiting").hidden = true;
  $("blocks").replaceChildren();
  $("blocks").hidden = true;
  $("inside-note").textContent = status === 413 ? "No feature maps: the file is too large to send."
    : status === 400 ? "No feature maps: the server could not read this file as an image."
    : `No feature maps: ${document_.message || "the server gave no reason"}`;
}

function tooLarge(size) {
  return {status: 413, error: "payload too large",
          message: `too large (${(size / MB).toFixed(1)} MB, limit ${payloadLimitMb} MB)`};
}

async function post(path, body, type) {
  let response;
  try {
    response = await fetch(path, {method: "POST", body, headers: {"Content-Type": type, "Accept": "application/json"}});
  } catch (e) {
    return {ok: false, status: 0, document: {error: "no answer", message: `${path}: the server closed the connection`}};
  }
  let document_;
  try { document_ = await response.json(); } catch (e) { document_ = {message: `${path} answered ${response.status}`}; }
  return {ok: response.ok, status: response.status, document: document_};
}

function showPrediction(prediction) {
  const entries = Object.entries(prediction.probabilities);
  $("prediction").textContent = prediction.label;
  $("prediction").dataset.classIndex = prediction.class_index;
  $("confidence").textContent = `probability ${(100 * prediction.probabilities[prediction.label]).toFixed(1)} %`;
  const bars = $("bars");
  bars.replaceChildren();
  entries.forEach(([name, p]) => {
    const row = document.createElement("div");
    row.className = "bar" + (name === prediction.label ? " top" : "");
    row.innerHTML = `<span class="name"></span><span class="track"><span class="fill"></span></span><span class="value"></span>`;
    row.querySelector(".name").textContent = name;
    row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    row.querySelector(".fill").style.display = "block";
    row.querySelector(".value").textContent = `${(100 * p).toFixed(1)} %`;
    bars.appendChild(row);
  });
}

function showInside(explained) {
  const colour = Array.isArray(explained.input[0][0]);  // [H][W][3] for an RGB model, [H][W] for grayscale
  paint($("input"), explained.input, colour ? (v) => v.map((c) => Math.round(255 * c))
                                            : (v) => { const g = Math.round(255 * v); return [g, g, g]; });
  const h = explained.input.length, w = explained.input[0].length;
  const steps = explained.preprocessing ? explained.preprocessing.photo_mapping : "";
  const mapped = steps && !["none", "off", "unchanged"].includes(steps) ? `, ${steps.replaceAll("+", ", ")}` : "";
  $("input-caption").textContent = `what the model sees (${h}x${w}${colour ? ", colour" : ""}${mapped})`;
  const blocks = $("blocks");
  blocks.replaceChildren();
  blocks.hidden = explained.blocks.length === 0;
  $("inside-note").textContent = explained.blocks.length
    ? `The ${explained.blocks[0].maps.length} most active channels after each conv block (yellow = strong), ` +
      `computed with ${explained.source}.`
    : explained.note;
  explained.blocks.forEach((block) => {
    const section = document.createElement("div");
    section.className = "block";
    const title = document.createElement("h3");
    title.textContent = `after ${block.name} (${block.shape.join("x")})`;
    const maps = document.createElement("div");
    maps.className = "maps";
    block.maps.forEach((map) => {
      const figure = document.createElement("figure");
      const canvas = document.createElement("canvas");
      canvas.className = "fmap";
      const [low, high] = range(map.values);
      paint(canvas, map.values, (v) => viridis(high > low ? (v - low) / (high - low) : 0));
      const caption = document.createElement("figcaption");
      caption.textContent = `channel ${map.channel}`;
      figure.append(canvas, caption);
      maps.appendChild(figure);
    });
    section.append(title, maps);
    blocks.appendChild(section);
  });
  showFilters(explained.filters);
}

function showFilters(filters) {
  const box = $("filters");
  if (!filters || box.dataset.drawn) return;
  const limit = Math.max(...filters.kernels.map((k) => Math.max(...k.flat().map(Math.abs)))) || 1;
  filters.kernels.forEach((kernel, index) => {
    const canvas = document.createElement("canvas");
    canvas.className = "filter";
    canvas.title = `${filters.layer} filter ${index}`;
    paint(canvas, kernel, (v) => diverging(v / limit));
    box.appendChild(canvas);
  });
  box.dataset.drawn = "1";
  $("filters-section").hidden = false;
}

async function classify(blob, name) {
  const type = blob.type || "application/x-image";
  $("error").hidden = true;
  $("waiting").hidden = false;
  $("waiting").textContent = `Predicting ${name}…`;
  document.body.dataset.state = "busy";
  if (payloadLimitMb !== null && blob.size > payloadLimitMb * MB) {
    showError(tooLarge(blob.size), 413);
    document.body.dataset.state = "error";
    return;
  }
  if ($("photo").src.startsWith("blob:")) URL.revokeObjectURL($("photo").src);
  $("photo").src = URL.createObjectURL(blob);
  const [predicted, explained] = await Promise.all([post("/invocations", blob, type), post("/explain", blob, type)]);
  if (!predicted.ok) {
    showError(predicted.document, predicted.status);
  } else {
    showPrediction(predicted.document.predictions[0]);
    $("answer").hidden = false;
    $("waiting").hidden = true;
    if (explained.ok) showInside(explained.document);
    else $("inside-note").textContent = `No feature maps: ${explained.document.message}`;
  }
  document.body.dataset.state = predicted.ok ? "shown" : "error";
}

async function loadSamples() {
  const response = await fetch("/samples");
  const offered = await response.json();
  const hint = $("samples-hint"), box = $("samples");
  hint.textContent = offered.samples.length ? `or take one of these ${offered.note}:` : offered.note;
  hint.hidden = false;
  offered.samples.forEach(({url, label}) => {
    const button = document.createElement("button");
    button.type = "button";
    button.title = label;
    button.dataset.sample = url.split("/").pop();
    const img = document.createElement("img");
    img.src = url;
    img.alt = label;
    button.appendChild(img);
    button.addEventListener("click", async () => {
      const blob = await (await fetch(img.src)).blob();
      classify(blob, label);
    });
    box.appendChild(button);
  });
  box.hidden = offered.samples.length === 0;
}

function describe(about, ping) {
  const parts = [];
  const classes = about.classes || [];
  if (classes.length) {
    const shown = classes.slice(0, 6).join(", ") + (classes.length > 6 ? `, … (${classes.length - 6} more)` : "");
    parts.push(`${classes.length} classes: ${shown}`);
  }
  if (typeof about.test_accuracy === "number") {
    parts.push(`test accuracy ${(100 * about.test_accuracy).toFixed(1)} %` +
               (about.num_test ? ` on ${about.num_test} images` : ""));
  }
  parts.push(ping.ok ? `${(ping.info.model && ping.info.model.backend) || "custom"} backend`
                     : "still loading; try again in a moment");
  return parts.join(" · ");
}

async function loadInfo() {
  try {
    const [aboutResponse, pingResponse] = await Promise.all([fetch("/about"), fetch("/ping")]);
    const about = await aboutResponse.json();
    payloadLimitMb = about.max_payload_mb;
    $("model-info").textContent = describe(about, {ok: pingResponse.ok, info: await pingResponse.json()});
    $("model-info").title = (about.classes || []).join(", ");
  } catch (e) {
    $("model-info").textContent = "The server does not answer /about and /ping.";
  }
}

function wireDrop() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) classify(file, file.name);
  });
  ["dragenter", "dragover"].forEach((kind) => drop.addEventListener(kind, (event) => {
    event.preventDefault(); drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((kind) => drop.addEventListener(kind, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) classify(file, file.name);
  });
}

wireDrop();
loadInfo();
loadSamples();
