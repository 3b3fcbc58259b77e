// The evaluation page: explainer x metric table, a comprehensive score with editable weights, plotly charts and
// the confusion of ground truth and top-1 predictions. Every control is in the URL, so a link shows the same view.
import { drawFigure, el, fill, getJSON, meanText, percent, readQuery, score, showError,
  summaryHeader, url, writeQuery } from "./util.js";

const SUMMARY = document.body.dataset.summary;
const API = url(`api/v1/summaries/${SUMMARY}`);
const POLL_MS = 5000;
const SORTS = [["score", "best score"], ["count", "most values"], ["name", "name"]];
const LIMITS = [20, 50, 100];
const RULE = "best only where it leads the runner-up by more than 2·√(SE₁² + SE₂²), "
  + "SE being the standard error of each mean over its per-sample values";
// Per-class charts: the figure and the URL parameters of its picker, sort, order, first row and rows per page.
const PER_CLASS = {
  explainer: { figure: "per-class-explainer", pick: "explainer", sort: "esort", order: "eorder", offset: "eoffset", limit: "elimit" },
  metric: { figure: "per-class-metric", pick: "metric", sort: "sort", order: "order", offset: "offset", limit: "limit" },
};
const head = document.getElementById("head");
const tableCard = document.getElementById("table");
const confusionCard = document.getElementById("confusion");
const charts = document.getElementById("charts");

let detail = null;
let table = null;
let weights = {};
const state = readQuery();

/** Put the page's state into the URL, without the values that are defaults. */
function save(changes) {
  Object.assign(state, changes);
  const defaults = { explainer: table.explainers[0], metric: table.metrics[0] && table.metrics[0].name,
    dist: table.metrics[0] && table.metrics[0].name };
  for (const spec of Object.values(PER_CLASS)) {
    Object.assign(defaults, { [spec.sort]: "count", [spec.order]: defaultOrder(state[spec.sort]), [spec.offset]: "0", [spec.limit]: "20" });
  }
  writeQuery(state, defaults);
}

function defaultOrder(sort) {
  return sort === "name" ? "asc" : "desc";
}

function readWeights(metrics) {
  const given = {};
  for (const part of (state.w || "").split(",")) {
    const at = part.lastIndexOf(":");
    if (at > 0) {
      const value = parseFloat(part.slice(at + 1));
      if (Number.isFinite(value) && value >= 0) given[part.slice(0, at)] = value;
    }
  }
  return Object.fromEntries(metrics.map((m) => [m.name, m.name in given ? given[m.name] : 1]));
}

function saveWeights() {
  const text = table.metrics.map((m) => `${m.name}:${weights[m.name]}`).join(",");
  save({ w: table.metrics.every((m) => weights[m.name] === 1) ? null : text });
}

function cell(explainer, metric) {
  return table.scores.find((row) => row.explainer === explainer && row.metric === metric);
}

/** Weighted mean of the normalised values an explainer has; null when none has a positive weight. */
function comprehensive(explainer) {
  let total = 0;
  let sum = 0;
  for (const metric of table.metrics) {
    const row = cell(explainer, metric.name);
    if (!row || row.normalized === null) continue;
    total += weights[metric.name];
    sum += weights[metric.name] * row.normalized;
  }
  return total > 0 ? sum / total : null;
}

function arrow(metric) {
  return el("span", { class: `arrow ${metric.higher_is_better ? "up" : "down"}`, title: metric.higher_is_better ? "higher is better" : "lower is better" },
    metric.higher_is_better ? "↑" : "↓");
}

function rangeText(metric) {
  const [lo, hi] = metric.range;
  if (lo === null && hi === null) return "unbounded";
  return `${lo === null ? "−∞" : score(lo).replace(/\.?0+$/, "")} … ${hi === null ? "∞" : score(hi).replace(/\.?0+$/, "")}`;
}

/** A camel-case name with line-break opportunities between its words (NaiveFaithfulness → Naive·Faithfulness). */
function breakable(name) {
  const parts = name.split(/(?<=[a-z])(?=[A-Z])/);
  return parts.flatMap((part, i) => (i ? [el("wbr"), part] : [part]));
}

/** The explainer's colour, as every chart draws it. */
function colorMark(explainer) {
  const known = detail.explainers.find((e) => e.name === explainer);
  const node = el("span", { class: "explainer-swatch", "aria-hidden": "true" });
  if (known && known.color) node.style.background = known.color;
  return node;
}

/** The title of a value cell: mean ± standard error, count, and why it is (or is not) highlighted. */
function cellTitle(explainer, metric, row) {
  const decision = (table.best || {})[metric.name] || {};
  const lines = [`${metric.name} of ${explainer}: ${meanText(row.value, row.sem)} (mean ± standard error of ${row.count} values)`,
    `normalised ${score(row.normalized)}`];
  if (decision.explainer === explainer) {
    lines.push(`best: leads ${decision.runner_up} by ${score(decision.difference)}, more than 2·SE of the difference (${score(decision.threshold)})`);
  } else if (!decision.explainer && decision.runner_up && isTop(explainer, metric)) {
    if (decision.difference === 0) lines.push("tied for first: no best");
    else if (decision.threshold !== null) lines.push(`first, but leads ${decision.runner_up} by only ${score(decision.difference)}, within 2·SE of the difference (${score(decision.threshold)}): no best`);
    else lines.push("too few values to tell a best");
  }
  lines.push(`Highlighted as ${RULE}.`);
  return lines.join("\n");
}

function isTop(explainer, metric) {
  const values = table.explainers.map((e) => cell(e, metric.name)).filter((r) => r && r.value !== null).map((r) => r.value);
  const top = metric.higher_is_better ? Math.max(...values) : Math.min(...values);
  return (cell(explainer, metric.name) || {}).value === top;
}

function updateComprehensive() {
  const total = table.metrics.reduce((sum, m) => sum + weights[m.name], 0);
  for (const metric of table.metrics) {
    const share = document.querySelector(`[data-share="${CSS.escape(metric.name)}"]`);
    if (share) share.textContent = total > 0 ? `${Math.round((weights[metric.name] / total) * 100)}%` : "–";
  }
  const scores = table.explainers.map((e) => [e, comprehensive(e)]);
  const ranked = scores.filter(([, v]) => v !== null).sort((a, b) => b[1] - a[1]).map(([e]) => e);
  for (const [explainer, value] of scores) {
    const node = document.querySelector(`[data-comprehensive="${CSS.escape(explainer)}"]`);
    if (!node) continue;
    node.querySelector(".score-value").textContent = value === null ? "–" : value.toFixed(3);
    node.querySelector(".bar-fill").style.width = `${value === null ? 0 : value * 100}%`;
    const rank = ranked.indexOf(explainer);
    node.querySelector(".rank").textContent = rank >= 0 ? `#${rank + 1}` : "";
    node.classList.toggle("best", rank === 0);
  }
  const query = table.metrics.map((m) => `${m.name}:${weights[m.name]}`).join(",");
  document.getElementById("download-csv").href = `${API}/scores?format=csv&weights=${encodeURIComponent(query)}`;
  document.getElementById("download-json").href = `${API}/scores?format=json&download=1&weights=${encodeURIComponent(query)}`;
}

function renderTable() {
  if (!table.scores.length) {
    fill(tableCard, el("h2", {}, "Explainer × metric"),
      el("p", { class: "empty" }, table.metrics.length ? "No scores have been written yet." : "This run has no benchmark metrics; register some with the runner to see scores here."));
    return;
  }
  const headRow = el("tr", {}, el("th", {}, "Explainer"), el("th", { class: "comprehensive-head" }, "Comprehensive"),
    table.metrics.map((m) => el("th", { class: "num metric-head", title: `${m.name}: ${m.higher_is_better ? "higher" : "lower"} is better, range ${rangeText(m)}, ${m.aggregation} over samples` },
      el("span", {}, breakable(m.name), "\u00a0", arrow(m)), el("div", { class: "muted small" }, rangeText(m)))));
  const weightRow = el("tr", { class: "weights" }, el("th", { class: "muted" }, "Weight"),
    el("th", { class: "muted small weights-note" }, "normalised to 100%"),
    table.metrics.map((m) => el("th", { class: "num" },
      el("input", { type: "number", min: "0", step: "0.1", value: String(weights[m.name]), class: "weight", "aria-label": `weight of ${m.name}`,
        dataset: { metric: m.name }, oninput: (event) => {
          const value = parseFloat(event.target.value);
          weights[m.name] = Number.isFinite(value) && value >= 0 ? value : 0;
          saveWeights();
          updateComprehensive();
        } }),
      el("div", { class: "share muted small", dataset: { share: m.name } }, ""))));
  const body = table.explainers.map((explainer) => el("tr", {},
    el("th", { scope: "row" }, colorMark(explainer), explainer),
    el("td", { class: "comprehensive", dataset: { comprehensive: explainer } },
      el("span", { class: "rank" }, ""), el("span", { class: "bar" }, el("span", { class: "bar-fill" })), el("span", { class: "score-value" }, "–")),
    table.metrics.map((m) => {
      const row = cell(explainer, m.name);
      const isBest = Boolean(row && table.best && table.best[m.name] && table.best[m.name].explainer === explainer);
      return el("td", { class: `num${isBest ? " best" : ""}`, dataset: { explainer, metric: m.name },
        title: row ? cellTitle(explainer, m, row) : "no values" }, row ? score(row.value) : "–");
    })));
  fill(tableCard,
    el("div", { class: "card-head" }, el("h2", {}, "Explainer × metric"), el("span", { class: "spacer" }),
      el("a", { class: "button small", id: "download-csv", download: "" }, "Download CSV"),
      el("a", { class: "button small", id: "download-json", download: "" }, "Download JSON")),
    el("div", { class: "table-scroll" }, el("table", { class: "table scores" }, el("thead", {}, headRow, weightRow), el("tbody", {}, body))),
    el("p", { class: "muted small footnote" }, "Each metric is scaled to [0, 1] within its range (open ranges use the explainers' spread), ",
      "lower-is-better metrics are inverted so 1 is always best, and the comprehensive score is their weighted mean. ",
      `A value is highlighted as ${RULE}; close races and exact ties highlight nothing. Hover a value for its mean ± standard error and count.`));
  updateComprehensive();
}

// -- charts ------------------------------------------------------------------------------------------------------

function picker(label, values, current, onchange) {
  return el("select", { "aria-label": label, onchange: (event) => onchange(event.target.value) },
    values.map(([value, text]) => el("option", { value, selected: value === current }, text)));
}

function chartCard(id, title, controls, wide = false) {
  const plot = el("div", { class: "chart", id: `chart-${id}` });
  const foot = el("div", { class: "chart-foot" });
  const card = el("section", { class: `card chart-card${wide ? " wide" : ""}`, dataset: { chart: id } },
    el("div", { class: "card-head" }, el("h2", {}, title), el("span", { class: "spacer" }), controls), plot, foot);
  return { card, plot, foot };
}

/** A picker chart: the chosen value lives in the URL under `param` and goes to the figure as `apiParam`. */
function pickerChart(id, title, param, apiParam, values, figure) {
  const current = () => (values.includes(state[param]) ? state[param] : values[0]);
  let parts = null;
  const draw = () => drawFigure(parts.plot, `${API}/figures/${figure}?${apiParam}=${encodeURIComponent(current())}`);
  parts = chartCard(id, title, picker(`${title}: ${apiParam}`, values.map((v) => [v, v]), current(), (value) => { save({ [param]: value }); draw(); }));
  return [parts.card, draw];
}

/** A per-class chart: picker, sort, order, rows per page and prev/next, all in the URL. */
function perClassChart(id, title, values) {
  const spec = PER_CLASS[id];
  const read = () => {
    const sort = SORTS.some(([s]) => s === state[spec.sort]) ? state[spec.sort] : "count";
    const limit = LIMITS.includes(Number(state[spec.limit])) ? Number(state[spec.limit]) : 20;
    const offset = /^\d+$/.test(state[spec.offset] || "") ? Number(state[spec.offset]) : 0;
    return { pick: values.includes(state[spec.pick]) ? state[spec.pick] : values[0], sort,
      order: ["asc", "desc"].includes(state[spec.order]) ? state[spec.order] : defaultOrder(sort), offset, limit };
  };
  const now = read();
  const orderButton = el("button", { type: "button", class: "button small order", "aria-label": `${title}: order` });
  const showOrder = (view) => {
    orderButton.textContent = view.order === "desc" ? "↓ desc" : "↑ asc";
    orderButton.title = view.sort === "name" ? (view.order === "asc" ? "A → Z" : "Z → A")
      : view.order === "desc" ? "highest first" : "lowest first";
  };
  let parts = null;
  const draw = async () => {
    const view = read();
    showOrder(view);
    const query = new URLSearchParams({ [spec.pick]: view.pick, sort: view.sort, order: view.order, offset: view.offset, limit: view.limit });
    const figure = await drawFigure(parts.plot, `${API}/figures/${spec.figure}?${query}`);
    if (!figure || !figure.meta) return;
    const meta = figure.meta;
    if (meta.offset !== view.offset) save({ [spec.offset]: String(meta.offset) });
    const last = meta.offset + meta.shown;
    const page = (offset) => { save({ [spec.offset]: String(offset) }); draw(); };
    fill(parts.foot,
      el("span", { class: "muted small page-info" }, meta.total ? `classes ${meta.offset + 1}–${last} of ${meta.total} with scores` : "no class has scores yet"),
      el("span", { class: "spacer" }),
      el("button", { type: "button", class: "button small prev", disabled: meta.offset === 0, onclick: () => page(Math.max(0, meta.offset - meta.limit)) }, "‹ Prev"),
      el("button", { type: "button", class: "button small next", disabled: last >= meta.total, onclick: () => page(meta.offset + meta.limit) }, "Next ›"));
  };
  orderButton.addEventListener("click", () => { const view = read(); save({ [spec.order]: view.order === "desc" ? "asc" : "desc", [spec.offset]: null }); draw(); });
  const controls = [
    picker(`${title}: ${spec.pick}`, values.map((v) => [v, v]), now.pick, (value) => { save({ [spec.pick]: value, [spec.offset]: null }); draw(); }),
    el("label", { class: "inline-label muted small" }, "sort",
      picker(`${title}: sort`, SORTS, now.sort, (value) => { save({ [spec.sort]: value, [spec.order]: null, [spec.offset]: null }); draw(); })),
    orderButton,
    el("label", { class: "inline-label muted small" }, "rows",
      picker(`${title}: rows`, LIMITS.map((n) => [String(n), String(n)]), String(now.limit), (value) => { save({ [spec.limit]: value, [spec.offset]: null }); draw(); })),
  ];
  parts = chartCard(id, title, controls, true);
  return [parts.card, draw];
}

function renderCharts() {
  const cards = [];
  const metrics = table.metrics.map((m) => m.name);
  if (table.scores.length) {
    cards.push(perClassChart("metric", "Per class · one metric", metrics));
    cards.push(perClassChart("explainer", "Per class · one explainer", table.explainers));
    cards.push(pickerChart("distribution", "Score distributions", "dist", "metric", metrics, "distributions"));
    const radar = chartCard("radar", "Normalised profile", null);
    cards.push([radar.card, () => drawFigure(radar.plot, `${API}/figures/radar`)]);
  }
  if (table.timings.length) {
    const timings = chartCard("timings", "Where time goes", null);
    cards.push([timings.card, () => drawFigure(timings.plot, `${API}/figures/timings`)]);
  }
  fill(charts, cards.map(([card]) => card));
  for (const [, draw] of cards) draw();
}

// -- confusion ---------------------------------------------------------------------------------------------------

function samplesLink(truth, predicted) {
  return url(truth === predicted ? `s/${SUMMARY}?labels=${truth}&types=TP` : `s/${SUMMARY}?labels=${predicted}&types=FP&truth=${truth}`);
}

/** The confusion matrix as a table: each cell a link to its samples, shaded by its share of the row (green on the
 * diagonal, red off it), so it reads without a chart library and every cell is a plain link. */
function matrixTable(matrix) {
  const seen = new Map();
  for (const name of matrix.names) seen.set(name, (seen.get(name) || 0) + 1);
  const names = matrix.names.map((name, i) => (seen.get(name) > 1 ? `${name} (#${matrix.classes[i]})` : name));
  const head = el("tr", {}, el("th", { class: "corner muted small" }, "truth ↓ · predicted →"),
    names.map((name) => el("th", { class: "col-name", title: name }, el("span", {}, name))));
  const rows = matrix.counts.map((row, i) => {
    const total = row.reduce((sum, n) => sum + n, 0);
    return el("tr", {}, el("th", { class: "row-name", scope: "row", title: names[i] }, names[i]),
      row.map((count, j) => {
        if (!count) return el("td", { class: "cell empty-cell" });
        const share = total ? count / total : 0;
        const tone = i === j ? "correct" : "confused";
        const cell = el("td", { class: `cell ${tone}` }, el("a", { href: samplesLink(matrix.classes[i], matrix.classes[j]),
          title: `truth ${names[i]}, predicted ${names[j]}: ${count} sample${count === 1 ? "" : "s"} (${percent(share)} of the row) · click to see them` },
          String(count)));
        cell.style.setProperty("--share", share.toFixed(3));
        return cell;
      }));
  });
  return el("div", { class: "table-scroll matrix-scroll" }, el("table", { class: "matrix", id: "confusion-matrix" },
    el("thead", {}, head), el("tbody", {}, rows)));
}

async function renderConfusion() {
  const data = await getJSON(`${API}/confusion`);
  if (!data.available) {
    fill(confusionCard, el("h2", {}, "Confusion"), el("p", { class: "muted confusion-message" }, data.message));
    return;
  }
  if (!data.num_samples) {
    fill(confusionCard, el("h2", {}, "Confusion"), el("p", { class: "empty" }, "No sample has both a ground truth and a prediction yet."));
    return;
  }
  const m = data.matrix;
  const pairs = data.pairs.map((p) => el("tr", {},
    el("td", {}, p.truth_name), el("td", {}, p.predicted_name),
    el("td", { class: "num" }, el("a", { href: samplesLink(p.truth, p.predicted), class: "pair-link", title: `the ${p.count} sample${p.count === 1 ? "" : "s"} of ${p.truth_name} predicted as ${p.predicted_name}` }, String(p.count)))));
  const worst = data.diagonal.filter((d) => d.correct < d.total).sort((a, b) => a.accuracy - b.accuracy || b.total - a.total).slice(0, 8);
  fill(confusionCard,
    el("div", { class: "card-head" }, el("h2", {}, "Confusion"), el("span", { class: "spacer" }),
      el("span", { class: "muted small" }, `top-1 accuracy ${percent(data.accuracy)} · ${data.correct} of ${data.num_samples} samples over ${data.diagonal.length} classes with samples`)),
    el("div", { class: "confusion-grid" },
      el("div", {}, matrixTable(m), el("p", { class: "muted small" }, `Rows: ground truth, columns: top-1 prediction; green: correct, red: confused, darker for a larger share of the row. `,
        m.total_classes > m.classes.length ? `The ${m.classes.length} of ${m.total_classes} classes with the most samples and errors are shown (${m.left_out} samples fall outside). ` : "",
        "Click a cell to browse its samples.")),
      el("div", {},
        el("h3", {}, "Most confused pairs"),
        pairs.length ? el("div", { class: "table-scroll pairs-scroll" }, el("table", { class: "table pairs" },
          el("thead", {}, el("tr", {}, el("th", {}, "Ground truth"), el("th", {}, "Predicted as"), el("th", { class: "num" }, "Samples"))),
          el("tbody", {}, pairs))) : el("p", { class: "muted" }, "No sample is misclassified."),
        data.pairs_total > data.pairs.length ? el("p", { class: "muted small" }, `${data.pairs.length} of ${data.pairs_total} pairs shown.`) : null,
        worst.length ? [el("h3", { class: "worst-head" }, "Least accurate classes"),
          el("ul", { class: "worst" }, worst.map((d) => el("li", {}, el("a", { href: samplesLink(d.index, d.index) }, d.name),
            el("span", { class: "muted" }, ` ${d.correct} of ${d.total} correct (${percent(d.accuracy)})`))))] : null)));
}

// -- loading and polling -----------------------------------------------------------------------------------------

async function load(first) {
  [detail, table] = await Promise.all([getJSON(API), getJSON(`${API}/scores`)]);
  if (first) weights = readWeights(table.metrics);
  fill(head, summaryHeader(detail, "scores"));
  renderTable();
  await renderConfusion().catch((error) => showError(confusionCard, error));
  renderCharts(); // plotly loads after the table and the confusion are painted
}

async function poll() {
  if (document.hidden || !detail || detail.status !== "running") return;
  try {
    const fresh = await getJSON(API);
    if (fresh.num_samples !== detail.num_samples || fresh.status !== detail.status) await load(false);
  } catch (_) {
    // try again at the next poll
  }
}

load(true).then(() => setInterval(poll, POLL_MS)).catch((error) => showError(tableCard, error));
