// Comparing runs: the score table side by side, per-class charts of each run, and one sample's maps across runs.
import { drawFigure, el, fill, fmt, getJSON, list, plural, readQuery, score, showError, statusBadge, typeBadge, writeQuery } from "./util.js";

const root = document.getElementById("compare");
const note = document.getElementById("compare-note");
const MAP_SIZE = 256;
let data = null;
let state = {};

function save() {
  writeQuery(state, { metric: null, sample: null, label: null, table: COMPREHENSIVE });
}

async function chooser() {
  const summaries = (await getJSON("/api/v1/summaries?limit=1000")).summaries.filter((s) => s.status !== "error" && s.created_at);
  const chosen = new Set();
  const button = el("button", { type: "button", class: "button primary", disabled: true, onclick: () => {
    window.location.href = `/compare?ids=${[...chosen].join(",")}`;
  } }, "Compare");
  const rows = summaries.map((s) => el("label", { class: "pick-row" },
    el("input", { type: "checkbox", onchange: (event) => {
      if (event.target.checked) chosen.add(s.id); else chosen.delete(s.id);
      button.disabled = chosen.size < 2;
    } }),
    el("span", { class: "name" }, s.name), el("span", { class: "path muted" }, s.path), statusBadge(s),
    el("span", { class: "muted" }, plural(s.num_samples, "sample"))));
  fill(root, el("section", { class: "card" }, el("h2", {}, "Pick the runs to compare"),
    summaries.length ? el("div", { class: "pick-list" }, rows) : el("p", { class: "empty" }, "No readable summary found."),
    el("div", { class: "card-foot" }, button)));
}

const COMPREHENSIVE = "comprehensive";
const ALL = "all";

function bestOf(values, higherIsBetter) {
  const defined = values.filter((v) => v !== null && v !== undefined);
  if (defined.length < 2) return null;
  return higherIsBetter ? Math.max(...defined) : Math.min(...defined);
}

function valueCells(values, higherIsBetter, counts) {
  const best = bestOf(values, higherIsBetter);
  const cells = values.map((v, i) => el("td", { class: `num${v !== null && v === best ? " best" : ""}`,
    title: counts ? `${counts[i]} values` : null }, score(v)));
  if (values.length === 2) {
    const delta = values[0] !== null && values[1] !== null ? values[1] - values[0] : null;
    const better = delta === null || delta === 0 ? "" : (delta > 0) === higherIsBetter ? " better" : " worse";
    cells.push(el("td", { class: `num delta${better}` }, delta === null ? "–" : `${delta > 0 ? "+" : ""}${score(delta)}`));
  }
  return cells;
}

function scoreTable() {
  const metrics = Object.fromEntries(data.metrics.map((m) => [m.name, m]));
  const choices = [[COMPREHENSIVE, "Comprehensive score (equal weights)"], ...data.metrics.map((m) => [m.name, m.name]), [ALL, "All metrics"]];
  state.table = choices.some(([value]) => value === state.table) ? state.table : COMPREHENSIVE;
  const body = el("div", {});
  const arrow = (metric) => el("span", { class: `arrow ${metric.higher_is_better ? "up" : "down"}`,
    title: metric.higher_is_better ? "higher is better" : "lower is better" }, metric.higher_is_better ? "↑" : "↓");
  const runHeads = () => [data.summaries.map((s) => el("th", { class: "num" }, el("a", { href: `/s/${s.id}/scores` }, s.name),
    el("div", { class: "muted small" }, s.path))), data.summaries.length === 2 ? el("th", { class: "num" }, "Δ second − first") : null];
  const draw = () => {
    let head;
    let rows;
    if (state.table === COMPREHENSIVE) {
      head = el("tr", {}, el("th", {}, "Explainer"), runHeads());
      rows = data.explainers.map((explainer) => el("tr", {}, el("th", { scope: "row" }, explainer),
        valueCells(data.comprehensive.map((c) => (explainer in c ? c[explainer] : null)), true)));
    } else if (state.table === ALL) {
      head = el("tr", {}, el("th", {}, "Explainer"), el("th", {}, "Metric"), runHeads());
      rows = data.table.map((row) => el("tr", {}, el("th", { scope: "row" }, row.explainer),
        el("td", {}, row.metric, " ", arrow(metrics[row.metric])), valueCells(row.values, metrics[row.metric].higher_is_better, row.counts)));
    } else {
      const metric = metrics[state.table];
      head = el("tr", {}, el("th", {}, "Explainer"), runHeads());
      rows = data.table.filter((row) => row.metric === metric.name).map((row) => el("tr", {},
        el("th", { scope: "row" }, row.explainer), valueCells(row.values, metric.higher_is_better, row.counts)));
    }
    fill(body, rows.length
      ? el("div", { class: "table-scroll" }, el("table", { class: "table compare" }, el("thead", {}, head), el("tbody", {}, rows)))
      : el("p", { class: "empty" }, "These runs have no scores."));
  };
  const picker = el("select", { id: "compare-table", "aria-label": "score to compare", onchange: (event) => { state.table = event.target.value; save(); draw(); } },
    choices.map(([value, text]) => el("option", { value, selected: value === state.table }, text)));
  draw();
  return el("section", { class: "card" },
    el("div", { class: "card-head" }, el("h2", {}, "Scores side by side"), el("span", { class: "spacer" }), picker),
    body,
    el("p", { class: "muted small" }, "The best value of each row is highlighted; Δ is coloured green where the second run is better."));
}

function perClassCharts() {
  if (!data.metrics.length) return null;
  state.metric = data.metrics.some((m) => m.name === state.metric) ? state.metric : data.metrics[0].name;
  const grid = el("div", { class: "chart-grid" });
  const draw = () => {
    fill(grid, data.summaries.map((s) => {
      const plot = el("div", { class: "chart" });
      drawFigure(plot, `/api/v1/summaries/${s.id}/figures/per-class-metric?metric=${encodeURIComponent(state.metric)}`);
      return el("section", { class: "card chart-card" }, el("h3", {}, s.name, " ", el("span", { class: "muted small" }, s.path)), plot);
    }));
  };
  const picker = el("select", { "aria-label": "metric of the per-class charts", onchange: (event) => { state.metric = event.target.value; save(); draw(); } },
    data.metrics.map((m) => el("option", { value: m.name, selected: m.name === state.metric }, m.name)));
  draw();
  return el("section", {}, el("div", { class: "section-head" }, el("h2", {}, "Per class"), el("span", { class: "spacer" }), picker), grid);
}

async function sampleRows(body, shared) {
  const samples = await Promise.all(data.summaries.map((s, i) => getJSON(`/api/v1/summaries/${s.id}/samples/${shared.ids[i]}`).catch(() => null)));
  const first = samples.find(Boolean);
  if (!first) {
    fill(body, el("p", { class: "empty" }, "This sample cannot be read."));
    return;
  }
  const explained = first.labels.filter((l) => l.type);
  const labels = explained.length ? explained : first.labels;
  let labelIndex = labels.some((l) => String(l.index) === state.label) ? parseInt(state.label, 10)
    : (labels.find((l) => l.ground_truth) || labels[0]).index;
  const labelPicker = el("select", { "aria-label": "label to compare", onchange: (event) => { state.label = event.target.value; save(); drawRows(); } },
    first.labels.map((l) => el("option", { value: String(l.index), selected: l.index === labelIndex }, `${l.name}${l.ground_truth ? " ★" : ""}`)));
  const rows = el("div", { class: "compare-rows" });
  const drawRows = () => {
    labelIndex = parseInt(labelPicker.value, 10);
    fill(rows, data.summaries.map((s, i) => {
      const sample = samples[i];
      if (!sample) return el("div", { class: "compare-row" }, el("div", { class: "run-name" }, s.name), el("p", { class: "muted" }, "sample missing"));
      const label = sample.labels.find((l) => l.index === labelIndex);
      const maps = label && label.saliency.length
        ? label.saliency.map((m) => el("figure", { class: "map-figure" },
          el("img", { class: "map", src: `${m.url}&overlay=1&alpha=0.5&size=${MAP_SIZE}`, width: "128", height: "128", alt: `${m.explainer} map in ${s.name}` }),
          el("figcaption", {}, m.explainer)))
        : [el("div", { class: "map-missing" }, "not explained for this label")];
      return el("div", { class: "compare-row" },
        el("div", { class: "run-name" }, el("a", { href: `/s/${s.id}` }, s.name),
          label ? el("div", { class: "small" }, `p = ${fmt(label.prob, 3)} `, typeBadge(label.type)) : null),
        el("figure", { class: "map-figure" }, el("img", { class: "sample-image", src: `${sample.image_url}&size=${MAP_SIZE}`, width: "128", height: "128", alt: sample.name }),
          el("figcaption", {}, "input")),
        maps);
    }));
  };
  fill(body, el("div", { class: "inline" }, el("span", { class: "field-label" }, "Label"), labelPicker), rows);
  drawRows();
}

function sharedSamples() {
  const shared = data.shared_samples;
  const section = el("section", { class: "card" }, el("h2", {}, "Same sample across runs"));
  if (!shared.total) {
    section.append(el("p", { class: "empty" }, "These runs share no samples (samples are matched by name)."));
    return section;
  }
  state.sample = shared.samples.some((s) => s.name === state.sample) ? state.sample : shared.samples[0].name;
  const body = el("div", {});
  const chosen = () => shared.samples.find((s) => s.name === state.sample);
  const picker = el("select", { id: "shared-sample", "aria-label": "sample to compare", onchange: (event) => { state.sample = event.target.value; state.label = null; save(); sampleRows(body, chosen()); } },
    shared.samples.map((s) => el("option", { value: s.name, selected: s.name === state.sample }, s.name)));
  section.append(el("div", { class: "inline" }, el("span", { class: "field-label" }, `Sample (${plural(shared.total, "shared sample")})`), picker), body);
  sampleRows(body, chosen());
  return section;
}

async function start() {
  const query = readQuery();
  const ids = list(query.ids);
  state = { ids: ids.join(","), table: query.table || COMPREHENSIVE, metric: query.metric || null, sample: query.sample || null,
    label: query.label || null };
  if (!ids.length) {
    await chooser();
    return;
  }
  data = await getJSON(`/api/v1/compare?ids=${encodeURIComponent(ids.join(","))}`);
  note.textContent = `${plural(data.summaries.length, "run")}: ${data.summaries.map((s) => s.name).join(" · ")}`;
  const runs = el("div", { class: "run-chips" }, data.summaries.map((s) => el("a", { class: "run-chip", href: `/s/${s.id}` },
    el("strong", {}, s.name), el("span", { class: "muted" }, s.path), statusBadge(s), el("span", { class: "muted" }, plural(s.num_samples, "sample")))));
  fill(root, runs, scoreTable(), perClassCharts(), sharedSamples());
}

start().catch((error) => showError(root, error));
