"use strict";
// The try-it page: the prediction comes from POST /invocations, the feature maps and filters from
// POST /explain, both answered by the server that serves this page. Nothing is fetched elsewhere.

const $ = (id) => document.getElementById(id);
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
  $("inside-note").textContent = "No feature maps: the server could not read this file as an image.";
}

async function post(path, body, type) {
  const response = await fetch(path, {method: "POST", body, headers: {"Content-Type": type, "Accept": "application/json"}});
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
  paint($("input"), explained.input, (v) => { const g = Math.round(255 * v); return [g, g, g]; });
  const h = explained.input.length, w = explained.input[0].length;
  const steps = explained.preprocessing ? explained.preprocessing.photo_mapping : "";
  const mapped = steps && !["none", "off", "unchanged"].includes(steps) ? `, ${steps.replaceAll("+", ", ")}` : "";
  $("input-caption").textContent = `what the model sees (${h}x${w}${mapped})`;
  const blocks = $("blocks");
  blocks.replaceChildren();
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
}

async function classify(blob, name) {
  const type = blob.type || "application/x-image";
  $("error").hidden = true;
  $("waiting").hidden = false;
  $("waiting").textContent = `Predicting ${name}…`;
  document.body.dataset.state = "busy";
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
  const {samples} = await response.json();
  samples.forEach((file) => {
    const button = document.createElement("button");
    button.type = "button";
    button.title = file.replace(/-test\d+\.png$/, "");
    button.dataset.sample = file;
    const img = document.createElement("img");
    img.src = `/static/samples/${file}`;
    img.alt = button.title;
    button.appendChild(img);
    button.addEventListener("click", async () => {
      const blob = await (await fetch(img.src)).blob();
      classify(blob, button.title);
    });
    $("samples").appendChild(button);
  });
}

async function loadInfo() {
  try {
    const response = await fetch("/ping");
    const info = await response.json();
    $("model-info").textContent = response.ok
      ? `Model ready (${info.model.backend || "custom"} backend).`
      : "The model is still loading; try again in a moment.";
  } catch (e) {
    $("model-info").textContent = "The server does not answer /ping.";
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
