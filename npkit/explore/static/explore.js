// npkit explore: condition trained models by clicking. No dependencies: SVG for 1D, canvas for images.
"use strict";

const COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"];
const W = 960, H = 440, PAD = { left: 48, right: 16, top: 16, bottom: 32 };
const SVG = "http://www.w3.org/2000/svg";

const state = {
  runs: [], maxPoints: 1000, selected: new Set(), seed: 0, points: [], truth: null, yRange: [-2, 2],
  predictions: {}, hovered: null, dragging: null, requestId: 0, pending: false, again: false,
  image: { run: null, index: 0, revealed: new Set(), pixels: null, painting: false, pending: false, again: false },
};
window.npkitExplore = state; // read by the browser test and handy in the console

async function api(path, body) {
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(`${data.field}: ${data.error}`);
  return data;
}

function setStatus(text) { document.getElementById("status").textContent = text; }

// ---------------------------------------------------------------- 1D functions

function functionRuns() { return state.runs.filter((r) => r.kind === "function"); }
function color(run) { return COLORS[run.id % COLORS.length]; }
function xRange() {
  const first = functionRuns().find((r) => state.selected.has(r.id)) || functionRuns()[0];
  return first.x_range;
}
function sx(x) { const [a, b] = xRange(); return PAD.left + ((x - a) / (b - a)) * (W - PAD.left - PAD.right); }
function sy(y) { const [a, b] = state.yRange; return H - PAD.bottom - ((y - a) / (b - a)) * (H - PAD.top - PAD.bottom); }
function ix(px) { const [a, b] = xRange(); return a + ((px - PAD.left) / (W - PAD.left - PAD.right)) * (b - a); }
function iy(py) { const [a, b] = state.yRange; return a + ((H - PAD.bottom - py) / (H - PAD.top - PAD.bottom)) * (b - a); }

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}
function niceTicks(low, high, count) {
  // multiples of 1, 2 or 5 times a power of ten, about ``count`` of them between low and high
  const raw = (high - low) / count, power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const ticks = [];
  for (let t = Math.ceil(low / step) * step; t <= high + 1e-9; t += step) ticks.push(Math.abs(t) < 1e-9 ? 0 : t);
  return ticks;
}
function line(xs, ys) { return xs.map((x, i) => `${sx(x).toFixed(1)},${sy(ys[i]).toFixed(1)}`).join(" "); }

async function newTask(seed) {
  const run = functionRuns().find((r) => state.selected.has(r.id)) || functionRuns()[0];
  state.seed = Number.isInteger(seed) ? seed : Math.floor(Math.random() * 1e9);
  history.replaceState(null, "", `?seed=${state.seed}`); // the address reproduces this task
  const task = await api("/api/task", { run: run.id, seed: state.seed });
  state.truth = task.truth;
  state.points = task.context.x.map((x, i) => ({ x, y: task.context.y[i] }));
  if (task.truth.y.length) {
    const lo = Math.min(...task.truth.y), hi = Math.max(...task.truth.y), margin = Math.max(0.5, 0.4 * (hi - lo));
    state.yRange = [lo - margin, hi + margin];
  } else {
    state.yRange = run.y_range; // own data: no hidden curve, the training outputs' spread
  }
  await update();
}

async function update() {
  // one round of predictions at a time (the band first, then the samples); changes made
  // meanwhile trigger one more round
  if (state.pending) { state.again = true; return; }
  state.pending = true;
  const id = ++state.requestId;
  const body = (run, samples) => ({
    run: run.id, seed: state.seed, grid: 200, num_samples: samples,
    context: { x: state.points.map((p) => p.x), y: state.points.map((p) => p.y) },
  });
  const t0 = performance.now();
  try {
    const chosen = functionRuns().filter((r) => state.selected.has(r.id));
    const round = async (samples) => {
      const results = await Promise.all(chosen.map((run) => api("/api/predict", body(run, samples))));
      if (id !== state.requestId) return;
      state.predictions = Object.fromEntries(chosen.map((run, i) => [run.id, results[i]]));
      draw();
    };
    await round(0);
    setStatus(`${state.points.length} context points · band in ${(performance.now() - t0).toFixed(0)} ms`);
    const samples = Number(document.getElementById("samples").value);
    if (samples > 0 && !state.again) await round(samples);
  } catch (err) {
    setStatus(`error: ${err.message}`);
  } finally {
    state.pending = false;
    if (state.again) { state.again = false; update(); }
  }
}

function draw() {
  const svg = document.getElementById("plot");
  svg.replaceChildren();
  const [a, b] = xRange();
  el("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: sy(state.yRange[0]), y2: sy(state.yRange[0]) }, svg);
  el("line", { class: "axis", x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom }, svg);
  for (let i = 0; i <= 8; i++) {
    const x = a + (i / 8) * (b - a);
    el("text", { class: "tick", x: sx(x), y: H - PAD.bottom + 16, "text-anchor": "middle" }, svg).textContent = x.toFixed(1);
  }
  for (const y of niceTicks(state.yRange[0], state.yRange[1], 5)) {
    el("text", { class: "tick", x: PAD.left - 6, y: sy(y) + 4, "text-anchor": "end" }, svg).textContent = y.toFixed(1);
    el("line", { class: "axis", x1: PAD.left - 3, x2: PAD.left, y1: sy(y), y2: sy(y) }, svg);
  }
  if (state.truth && state.truth.x.length) el("polyline", { class: "truth", points: line(state.truth.x, state.truth.y) }, svg);
  const rows = [];
  let oracleDrawn = false;
  for (const run of functionRuns().filter((r) => state.selected.has(r.id))) {
    const p = state.predictions[run.id];
    if (!p) continue;
    const upper = p.x.map((x, i) => `${sx(x).toFixed(1)},${sy(p.mean[i] + 2 * p.std[i]).toFixed(1)}`);
    const lower = p.x.map((x, i) => `${sx(x).toFixed(1)},${sy(p.mean[i] - 2 * p.std[i]).toFixed(1)}`).reverse();
    el("polygon", { class: "band", fill: color(run), "data-run": run.id, points: upper.concat(lower).join(" ") }, svg);
    for (const ys of p.samples.y) el("polyline", { class: "sample", stroke: color(run), points: line(p.samples.x, ys) }, svg);
    el("polyline", { class: "mean", stroke: color(run), "data-run": run.id, points: line(p.x, p.mean) }, svg);
    if (p.oracle && !oracleDrawn) {
      oracleDrawn = true;
      el("polyline", { class: "oracle", points: line(p.x, p.oracle.mean) }, svg);
      el("polyline", { class: "oracle-band", points: line(p.x, p.x.map((_, i) => p.oracle.mean[i] + 2 * p.oracle.std[i])) }, svg);
      el("polyline", { class: "oracle-band", points: line(p.x, p.x.map((_, i) => p.oracle.mean[i] - 2 * p.oracle.std[i])) }, svg);
      rows.push(["GP oracle", p.oracle.truth_ll, null, null, "#c0392b"]);
    }
    rows.push([run.name, p.truth_ll, p.collapse && p.collapse.posterior_std, p.collapse && p.collapse.kl, color(run)]);
  }
  state.points.forEach((pt, i) => {
    const c = el("circle", { class: "point", cx: sx(pt.x), cy: sy(pt.y), r: 5.5, "data-index": i }, svg);
    c.addEventListener("mouseenter", () => { state.hovered = i; });
    c.addEventListener("mouseleave", () => { state.hovered = null; });
  });
  const fmt = (v) => (v === null || v === undefined ? "-" : v.toFixed(3));
  document.querySelector("#scores tbody").replaceChildren(...rows.map(([name, ll, std, kl, c]) => {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td><span class="swatch" style="background:${c}"></span>${name}</td><td>${fmt(ll)}</td><td>${fmt(std)}</td><td>${fmt(kl)}</td>`;
    return tr;
  }));
}

function mouse(event) {
  const box = document.getElementById("plot").getBoundingClientRect();
  return { px: event.clientX - box.left, py: event.clientY - box.top };
}

function setUpPlot() {
  const svg = document.getElementById("plot");
  svg.addEventListener("mousedown", (event) => {
    if (event.button !== 0) return;
    const { px, py } = mouse(event);
    const index = event.target.dataset ? event.target.dataset.index : undefined;
    if (index !== undefined) { state.dragging = Number(index); return; }
    if (state.points.length >= state.maxPoints) { setStatus(`at most ${state.maxPoints} points`); return; }
    if (px < PAD.left - 3 || px > W - PAD.right + 3) return; // in the margin: not on the plot
    const [a, b] = xRange(), x = Math.min(b, Math.max(a, ix(px)));
    state.points.push({ x, y: iy(py) });
    draw();
    update();
  });
  svg.addEventListener("mousemove", (event) => {
    if (state.dragging === null) return;
    const { px, py } = mouse(event), [a, b] = xRange();
    state.points[state.dragging] = { x: Math.min(b, Math.max(a, ix(px))), y: iy(py) };
    draw();
    update();
  });
  window.addEventListener("mouseup", () => { state.dragging = null; });
  svg.addEventListener("contextmenu", (event) => {
    event.preventDefault();
    const index = event.target.dataset ? event.target.dataset.index : undefined;
    if (index !== undefined) removePoint(Number(index));
  });
  window.addEventListener("keydown", (event) => {
    if ((event.key === "Delete" || event.key === "Backspace") && state.hovered !== null) removePoint(state.hovered);
  });
}

function removePoint(i) {
  state.points.splice(i, 1);
  state.hovered = null;
  draw();
  update();
}

// ---------------------------------------------------------------- images

function imageRun() { return state.runs.find((r) => r.id === state.image.run); }

// values [pixels][channels]; transform(value, i) gives [gray] or [r, g, b] in [0, 1], or null to skip
function paint(canvas, values, scale, transform) {
  const run = imageRun(), ctx = canvas.getContext("2d");
  canvas.width = run.width * scale; canvas.height = run.height * scale;
  canvas.style.width = `${run.width * scale}px`;
  for (let i = 0; i < run.height * run.width; i++) {
    const v = transform(values[i], i);
    if (v === null) continue;
    const rgb = v.length === 1 ? [v[0], v[0], v[0]] : v;
    ctx.fillStyle = `rgb(${rgb.map((c) => Math.round(255 * Math.min(1, Math.max(0, c)))).join(",")})`;
    ctx.fillRect((i % run.width) * scale, Math.floor(i / run.width) * scale, scale, scale);
  }
}

function scaleOf(run) { return Math.max(4, Math.floor(224 / Math.max(run.width, run.height))); }

function drawObserved() {
  const run = imageRun(), canvas = document.getElementById("observed");
  paint(canvas, state.image.pixels, scaleOf(run), (v, i) => (state.image.revealed.has(i) ? v : [0.2, 0.3, 0.75]));
}

async function loadImage() {
  const run = imageRun();
  const input = document.getElementById("image-index");
  input.max = run.num_images - 1;
  state.image.index = Math.min(Number(input.value) || 0, run.num_images - 1);
  state.image.pixels = (await api("/api/image", { run: run.id, index: state.image.index })).pixels;
  drawObserved();
  await complete();
}

async function complete() {
  if (state.image.pending) { state.image.again = true; return; }
  state.image.pending = true;
  const run = imageRun(), t0 = performance.now();
  try {
    const result = await api("/api/complete", {
      run: run.id, index: state.image.index, revealed: [...state.image.revealed], num_samples: 3, seed: 0,
    });
    const scale = scaleOf(run);
    paint(document.getElementById("mean"), result.mean, scale, (v) => v);
    const top = Math.max(1e-6, ...result.std.map((s) => Math.max(...s)));
    paint(document.getElementById("std"), result.std, scale, (v) => v.map((s) => s / top));
    const holder = document.getElementById("sample-panels");
    holder.replaceChildren(...result.samples.map((sample, k) => {
      const figure = document.createElement("figure"), canvas = document.createElement("canvas");
      canvas.className = "sample";
      figure.append(canvas, Object.assign(document.createElement("figcaption"), { textContent: `sample ${k + 1}` }));
      paint(canvas, sample, scale, (v) => v);
      return figure;
    }));
    state.image.last = result;
    setStatus(`${state.image.revealed.size} pixels revealed · ${(performance.now() - t0).toFixed(0)} ms`);
  } catch (err) {
    setStatus(`error: ${err.message}`);
  } finally {
    state.image.pending = false;
    if (state.image.again) { state.image.again = false; complete(); }
  }
}

function setUpImages() {
  const canvas = document.getElementById("observed");
  const reveal = (event) => {
    const run = imageRun(), scale = scaleOf(run), box = canvas.getBoundingClientRect();
    const col = Math.floor((event.clientX - box.left) / scale), row = Math.floor((event.clientY - box.top) / scale);
    for (let dr = -1; dr <= 1; dr++) for (let dc = -1; dc <= 1; dc++) {
      const r = row + dr, c = col + dc;
      if (r >= 0 && r < run.height && c >= 0 && c < run.width) state.image.revealed.add(r * run.width + c);
    }
    drawObserved();
    complete();
  };
  canvas.addEventListener("mousedown", (event) => { state.image.painting = true; reveal(event); });
  canvas.addEventListener("mousemove", (event) => { if (state.image.painting) reveal(event); });
  window.addEventListener("mouseup", () => { state.image.painting = false; });
  document.getElementById("reveal").addEventListener("click", () => {
    const run = imageRun(), total = run.width * run.height;
    let n = Number(document.getElementById("reveal-count").value) || 1;
    while (n > 0 && state.image.revealed.size < total) {
      const before = state.image.revealed.size;
      state.image.revealed.add(Math.floor(Math.random() * total));
      if (state.image.revealed.size > before) n--;
    }
    drawObserved();
    complete();
  });
  document.getElementById("hide-all").addEventListener("click", () => { state.image.revealed.clear(); drawObserved(); complete(); });
  document.getElementById("image-index").addEventListener("change", () => { state.image.revealed.clear(); loadImage(); });
  document.getElementById("image-run").addEventListener("change", (event) => {
    state.image.run = Number(event.target.value);
    state.image.revealed.clear();
    loadImage();
  });
}

// ---------------------------------------------------------------- start

function showMode(mode) {
  for (const m of ["function", "image"]) document.getElementById(`${m}-mode`).hidden = m !== mode;
  for (const button of document.querySelectorAll("#modes button")) button.classList.toggle("active", button.dataset.mode === mode);
}

async function start() {
  const info = await api("/api/runs");
  state.runs = info.runs;
  state.maxPoints = info.max_points;
  const modes = document.getElementById("modes");
  const kinds = [...new Set(state.runs.map((r) => r.kind))];
  for (const kind of kinds) {
    const button = Object.assign(document.createElement("button"), { type: "button", textContent: kind === "function" ? "1D functions" : "images" });
    button.dataset.mode = kind;
    button.addEventListener("click", () => showMode(kind));
    modes.appendChild(button);
  }
  if (functionRuns().length) {
    const box = document.getElementById("function-runs");
    functionRuns().forEach((run, i) => {
      const label = document.createElement("label");
      label.innerHTML = `<input type="checkbox" value="${run.id}" ${i === 0 ? "checked" : ""}> <span class="swatch" style="background:${color(run)}"></span>${run.name} <small>(${run.family}${run.latent ? ", latent" : ""})</small>`;
      label.querySelector("input").addEventListener("change", (event) => {
        if (event.target.checked) state.selected.add(run.id); else state.selected.delete(run.id);
        update();
      });
      box.appendChild(label);
    });
    state.selected.add(functionRuns()[0].id);
    const slider = document.getElementById("samples");
    slider.addEventListener("input", () => { document.getElementById("samples-out").textContent = slider.value; update(); });
    document.getElementById("new-task").addEventListener("click", () => newTask());
    document.getElementById("clear").addEventListener("click", () => { state.points = []; draw(); update(); });
    setUpPlot();
    const seed = Number.parseInt(new URLSearchParams(location.search).get("seed"), 10);
    await newTask(Number.isNaN(seed) ? undefined : seed);
  }
  const images = state.runs.filter((r) => r.kind === "image");
  if (images.length) {
    const select = document.getElementById("image-run");
    for (const run of images) select.appendChild(Object.assign(document.createElement("option"), { value: run.id, textContent: `${run.name} (${run.family})` }));
    state.image.run = images[0].id;
    setUpImages();
    await loadImage();
  }
  showMode(kinds[0]);
  document.body.dataset.ready = "true";
}

start().catch((err) => setStatus(`error: ${err.message}`));
