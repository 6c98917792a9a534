// The PaDiRec control page: one slider per objective of the served model, the top-k list for a user of the model's
// data (with the list's metrics against their held-out item) or for a typed history, and the model's trade-off
// curve with the current w marked. Plain DOM and SVG against the app's own API: /v1/model, /v1/recommendations.
"use strict";

const K = 10;
const COLOURS = { Retrain: "#8a8f99", PaDiRec: "#1f6fd1" };
const state = { model: null, weights: [], pending: null, seq: 0 };
const $ = (id) => document.getElementById(id);

function element(tag, attrs = {}, text = "") {
  const node = document.createElementNS(tag === "svg" || attrs.svg ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [key, value] of Object.entries(attrs)) if (key !== "svg") node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

// Set objective i to v and rescale the others so that the weights still sum to 1 (evenly when they were all 0).
function setWeight(i, v) {
  const w = state.weights, rest = w.reduce((s, x, j) => s + (j === i ? 0 : x), 0);
  w[i] = v;
  for (let j = 0; j < w.length; j++) {
    if (j !== i) w[j] = rest > 1e-9 ? (w[j] / rest) * (1 - v) : (1 - v) / (w.length - 1);
  }
}

function buildSliders(objectives) {
  const box = $("sliders");
  box.replaceChildren();
  state.weights = objectives.map(() => 1 / objectives.length);
  objectives.forEach((name, i) => {
    const row = element("div", { class: "slider" });
    const input = element("input", { type: "range", min: "0", max: "100", step: "1", id: `w-${name}`,
                                     "data-objective": name, "aria-label": `${name} weight` });
    row.append(element("label", { for: `w-${name}` }, name), input, element("output", { id: `w-${name}-value` }));
    input.addEventListener("input", () => { setWeight(i, input.valueAsNumber / 100); changed(); });
    box.append(row);
  });
  showWeights();
}

function showWeights() {
  state.model.objectives.forEach((name, i) => {
    $(`w-${name}`).value = Math.round(state.weights[i] * 100);
    $(`w-${name}-value`).textContent = state.weights[i].toFixed(2);
  });
  $("weights").textContent = "(" + state.model.objectives.map((n, i) => `${n} ${state.weights[i].toFixed(2)}`).join(", ") + ")";
}

// The weights in thousandths that sum to exactly 1 (largest remainders): with three or more objectives, rounding
// each on its own can overshoot the server's tolerance, and taking the last as 1 minus the rest can go negative.
function weightsBody() {
  const scaled = state.weights.map((x) => Math.max(0, x) * 1000), units = scaled.map(Math.floor);
  let left = 1000 - units.reduce((s, u) => s + u, 0);
  for (const i of scaled.map((x, j) => j).sort((a, b) => (scaled[b] - units[b]) - (scaled[a] - units[a]))) {
    if (left <= 0) break;
    units[i] += 1; left -= 1;
  }
  return Object.fromEntries(state.model.objectives.map((name, i) => [name, units[i] / 1000]));
}

// ------------------------------------------------------------------------------------------------------ the curve

function curveByMethod(rows) {
  const methods = {};
  for (const row of rows) (methods[row.method] ||= []).push(row);
  for (const points of Object.values(methods)) points.sort((a, b) => a.w_acc - b.w_acc);
  return methods;
}

function drawCurve() {
  const svg = $("curve"), rows = state.model.curve.filter((r) => r.method in COLOURS);
  svg.replaceChildren();
  if (!rows.length) {
    $("curve-note").textContent = "No report for this model yet: run `padirec report` (or the pipeline) to see its curve.";
    return;
  }
  const W = 380, H = 270, L = 52, B = 36, R = 22, T = 12;
  const xs = rows.map((r) => r.alpha_ndcg10), ys = rows.map((r) => r.ndcg10);
  const pad = (lo, hi) => { const d = (hi - lo) || Math.abs(hi) || 1; return [lo - 0.08 * d, hi + 0.08 * d]; };
  const [x0, x1] = pad(Math.min(...xs), Math.max(...xs)), [y0, y1] = pad(Math.min(...ys), Math.max(...ys));
  const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R), py = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - B - T);
  svg.append(element("rect", { svg: 1, x: L, y: T, width: W - L - R, height: H - B - T, fill: "none", stroke: "#ccd" }));
  for (const t of [0, 0.5, 1]) {
    const x = x0 + t * (x1 - x0), y = y0 + t * (y1 - y0);
    svg.append(element("text", { svg: 1, x: px(x), y: H - B + 14, "text-anchor": "middle" }, x.toFixed(3)));
    svg.append(element("text", { svg: 1, x: L - 4, y: py(y) + 4, "text-anchor": "end" }, y.toFixed(3)));
  }
  svg.append(element("text", { svg: 1, x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, "α-NDCG@10 (diversity)"));
  svg.append(element("text", { svg: 1, x: 12, y: (T + H - B) / 2, transform: `rotate(-90 12 ${(T + H - B) / 2})`,
                               "text-anchor": "middle" }, "NDCG@10 (accuracy)"));
  const methods = curveByMethod(rows);
  let legend = T + 14;
  for (const [method, points] of Object.entries(methods)) {
    const colour = COLOURS[method];
    svg.append(element("polyline", { svg: 1, fill: "none", stroke: colour, "stroke-width": 2, "data-method": method,
                                     points: points.map((p) => `${px(p.alpha_ndcg10)},${py(p.ndcg10)}`).join(" ") }));
    for (const p of points) {
      const dot = element("circle", { svg: 1, cx: px(p.alpha_ndcg10), cy: py(p.ndcg10), r: 2.5, fill: colour });
      dot.append(element("title", { svg: 1 }, `${method} w_acc=${p.w_acc}`));
      svg.append(dot);
    }
    svg.append(element("text", { svg: 1, x: W - R - 6, y: legend, "text-anchor": "end", fill: colour }, method));
    legend += 14;
  }
  state.project = { px, py, points: methods.PaDiRec || methods.Retrain };
  svg.append(element("circle", { svg: 1, id: "marker", r: 6, fill: "none", stroke: "#d12f1f", "stroke-width": 2.5 }));
  $("curve-note").textContent = `Report run ${state.model.report_run_id}. The ring marks the model's point for the current accuracy weight.`;
  moveMarker();
}

// The curve's point at the current accuracy weight, interpolated between the report's weights.
function moveMarker() {
  const marker = $("marker");
  if (!marker || !state.project) return;
  const points = state.project.points, a = state.weights[state.model.objectives.indexOf("accuracy")] ?? 0;
  let i = points.findIndex((p) => p.w_acc >= a);
  if (i <= 0) i = i === 0 ? 1 : points.length - 1;
  const p = points[i - 1] || points[0], q = points[i] || points[0];
  const t = q.w_acc === p.w_acc ? 0 : Math.min(1, Math.max(0, (a - p.w_acc) / (q.w_acc - p.w_acc)));
  marker.setAttribute("cx", state.project.px(p.alpha_ndcg10 + t * (q.alpha_ndcg10 - p.alpha_ndcg10)).toFixed(1));
  marker.setAttribute("cy", state.project.py(p.ndcg10 + t * (q.ndcg10 - p.ndcg10)).toFixed(1));
  marker.setAttribute("data-w-acc", a.toFixed(3));
}

// -------------------------------------------------------------------------------------------------- the list

function itemLine(id, details, extra = "") {
  const info = (details || {})[String(id)];
  const li = element("li", { "data-item": id });
  li.append(element("span", { class: "title" }, info && info.title ? info.title : `item ${info ? info.raw_id : id}`));
  if (info && info.categories.length) li.append(" ", element("span", { class: "cats" }, info.categories.join(", ")));
  if (extra) li.append(" ", element("span", { class: "score" }, extra));
  return li;
}

function requestBody() {
  const body = { weights: weightsBody(), k: K, describe: true };
  if ($("mode-user").checked && $("user").value) {
    body.user = $("user").value;
  } else {
    body.history = $("history").value.split(/[\s,]+/).filter(Boolean).map(Number);
  }
  return body;
}

async function refresh() {
  const seq = ++state.seq, body = requestBody();
  if (!body.user && !body.history.length) { $("status").textContent = "Type a history or pick a user."; return; }
  $("status").textContent = "asking…";
  const started = performance.now();
  let answer;
  try {
    const response = await fetch("v1/recommendations", { method: "POST", headers: { "Content-Type": "application/json" },
                                                        body: JSON.stringify(body) });
    answer = await response.json();
    if (!response.ok) throw new Error(typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail));
  } catch (err) {
    if (seq === state.seq) {  // no stale list beside the error
      $("list").replaceChildren(); $("list").dataset.weights = ""; $("metrics").replaceChildren();
      $("status").replaceChildren(element("span", { class: "error" }, String(err.message || err)));
    }
    return;
  }
  if (seq !== state.seq) return;  // a newer request is on its way
  const list = $("list");
  list.dataset.weights = answer.weights.join(",");  // the w the shown list is for (the adapter's rounded w)
  list.replaceChildren(...answer.items.map((id, r) => {
    const li = itemLine(id, answer.details, answer.scores[r].toFixed(3));
    if (id === answer.held_out) li.classList.add("held-out");
    return li;
  }));
  const metrics = $("metrics");
  metrics.replaceChildren();
  if (answer.metrics) {
    for (const [name, value] of Object.entries(answer.metrics)) metrics.append(element("span", { "data-metric": name }, `${name} ${value.toFixed(3)}`));
    metrics.append(element("span", { class: "muted" }, "against the user's held-out (test) item, highlighted when listed"));
  }
  const history = answer.history || body.history;
  $("history-list").replaceChildren(...history.slice(-10).map((id) => itemLine(id, answer.details)));
  $("status").textContent = `${answer.cached ? "cached adapter" : "generated adapter"} · ${Math.round(performance.now() - started)} ms`;
}

function changed() {
  showWeights();
  moveMarker();
  clearTimeout(state.pending);
  state.pending = setTimeout(refresh, 120);
}

async function start() {
  const response = await fetch("v1/model");
  const model = await response.json();
  state.model = model;
  const g = model.generator;
  $("history").placeholder = `item ids 1..${model.n_items}, oldest first: 12, 7, 31`;
  $("model-info").textContent = `${g.model_version || g.checkpoint} · objectives ${model.objectives.join(", ")} · ` +
    `${model.n_items} items · backbone ${model.recommender.name}`;
  buildSliders(model.objectives);
  const select = $("user");
  select.replaceChildren(...model.catalogue.users.map((u) => element("option", { value: u }, `user ${u}`)));
  if (!model.catalogue.available) {
    $("mode-history").checked = true;
    $("user").disabled = $("mode-user").disabled = true;
    $("catalogue-note").textContent = `No user data: ${model.catalogue.reason}.`;
  } else {
    $("catalogue-note").textContent = `${model.catalogue.n_users} users; the list is made from each user's history ` +
      "before their held-out item, so its metrics are the test split's.";
  }
  for (const id of ["user", "history", "mode-user", "mode-history"]) $(id).addEventListener("change", refresh);
  drawCurve();
  refresh();
}

start();
