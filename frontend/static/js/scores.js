// The evaluation page: explainer x metric table, a comprehensive score with editable weights, and plotly charts.
import { drawFigure, el, fill, fmt, getJSON, readQuery, score, showError, summaryHeader, writeQuery } from "./util.js";

const SUMMARY = document.body.dataset.summary;
const API = `/api/v1/summaries/${SUMMARY}`;
const POLL_MS = 5000;
const head = document.getElementById("head");
const tableCard = document.getElementById("table");
const charts = document.getElementById("charts");

let detail = null;
let table = null;
let weights = {};
const chartState = {};

function readWeights(metrics) {
  const given = {};
  for (const part of (readQuery().w || "").split(",")) {
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
  const allOne = table.metrics.every((m) => weights[m.name] === 1);
  writeQuery({ ...readQuery(), w: allOne ? null : text });
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

function best(metric) {
  const values = table.explainers.map((e) => cell(e, metric.name)).filter((r) => r && r.value !== null).map((r) => r.value);
  if (!values.length) return null;
  return metric.higher_is_better ? Math.max(...values) : Math.min(...values);
}

function arrow(metric) {
  return el("span", { class: `arrow ${metric.higher_is_better ? "up" : "down"}`, title: metric.higher_is_better ? "higher is better" : "lower is better" },
    metric.higher_is_better ? "↑" : "↓");
}

function rangeText(metric) {
  const [lo, hi] = metric.range;
  if (lo === null && hi === null) return "unbounded";
  return `${lo === null ? "−∞" : fmt(lo, 2)} … ${hi === null ? "∞" : fmt(hi, 2)}`;
}

/** A camel-case name with line-break opportunities between its words (NaiveFaithfulness → Naive·Faithfulness). */
function breakable(name) {
  const parts = name.split(/(?<=[a-z])(?=[A-Z])/);
  return parts.flatMap((part, i) => (i ? [el("wbr"), part] : [part]));
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
  const bests = Object.fromEntries(table.metrics.map((m) => [m.name, best(m)]));
  const body = table.explainers.map((explainer) => el("tr", {},
    el("th", { scope: "row" }, explainer),
    el("td", { class: "comprehensive", dataset: { comprehensive: explainer } },
      el("span", { class: "rank" }, ""), el("span", { class: "bar" }, el("span", { class: "bar-fill" })), el("span", { class: "score-value" }, "–")),
    table.metrics.map((m) => {
      const row = cell(explainer, m.name);
      const isBest = row && row.value !== null && table.explainers.length > 1 && row.value === bests[m.name];
      return el("td", { class: `num${isBest ? " best" : ""}`, title: row ? `${m.name} of ${explainer}: mean of ${row.count} values; normalised ${score(row.normalized)}` : "no values" },
        row ? score(row.value) : "–");
    })));
  fill(tableCard,
    el("div", { class: "card-head" }, el("h2", {}, "Explainer × metric"), el("span", { class: "spacer" }),
      el("a", { class: "button small", id: "download-csv", download: "" }, "Download CSV"),
      el("a", { class: "button small", id: "download-json", download: "" }, "Download JSON")),
    el("div", { class: "table-scroll" }, el("table", { class: "table scores" }, el("thead", {}, headRow, weightRow), el("tbody", {}, body))),
    el("p", { class: "muted small" }, "Each metric is scaled to [0, 1] within its range (open ranges use the explainers' spread), ",
      "lower-is-better metrics are inverted so 1 is always best, and the comprehensive score is their weighted mean. ",
      "The best value of each metric is highlighted; hover a value for its count."));
  updateComprehensive();
}

function chartCard(id, title, choices, figure, wide = false) {
  const plot = el("div", { class: "chart", id: `chart-${id}` });
  const draw = () => {
    const params = new URLSearchParams();
    if (choices) params.set(choices.param, chartState[id]);
    drawFigure(plot, `${API}/figures/${figure}${choices ? "?" + params : ""}`);
  };
  let picker = null;
  if (choices) {
    chartState[id] = chartState[id] || choices.values[0];
    picker = el("select", { "aria-label": `${title}: ${choices.param}`, onchange: (event) => { chartState[id] = event.target.value; draw(); } },
      choices.values.map((value) => el("option", { value, selected: value === chartState[id] }, value)));
  }
  const card = el("section", { class: `card chart-card${wide ? " wide" : ""}` }, el("div", { class: "card-head" }, el("h2", {}, title), el("span", { class: "spacer" }), picker), plot);
  return [card, draw];
}

function renderCharts() {
  const cards = [];
  const metrics = table.metrics.map((m) => m.name);
  if (table.scores.length) {
    cards.push(chartCard("explainer", "Per class · one explainer", { param: "explainer", values: table.explainers }, "per-class-explainer"));
    cards.push(chartCard("metric", "Per class · one metric", { param: "metric", values: metrics }, "per-class-metric"));
    cards.push(chartCard("distribution", "Score distributions", { param: "metric", values: metrics }, "distributions"));
    cards.push(chartCard("radar", "Normalised profile", null, "radar"));
  }
  if (table.timings.length) cards.push(chartCard("timings", "Where time goes", null, "timings"));
  fill(charts, cards.map(([card]) => card));
  for (const [, draw] of cards) draw();
}

async function load(first) {
  [detail, table] = await Promise.all([getJSON(API), getJSON(`${API}/scores`)]);
  if (first) weights = readWeights(table.metrics);
  fill(head, summaryHeader(detail, "scores"));
  renderTable();
  renderCharts();
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
