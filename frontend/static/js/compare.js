// Comparing runs: what differs between them, the score table side by side with one normalisation for all runs,
// per-class values of the classes every run has, per-class charts of each run, and one sample's maps across runs.
// Every picker is kept in the URL.
import { drawFigure, el, fill, fmt, getJSON, list, plural, readQuery, requestSize, score, showError, sized, statusBadge,
  typeBadge, url, writeQuery } from "./util.js";

const root = document.getElementById("compare");
const note = document.getElementById("compare-note");
const MAP_PX = 128;
const CHART_CLASSES = 20;
const CLASS_ROWS = 20;
const COMPREHENSIVE = "comprehensive";
const ALL = "all";
const DEFAULTS = { metric: null, explainer: null, sample: null, label: null, table: COMPREHENSIVE, classes: "0" };
let data = null;
let state = {};

function save() {
  writeQuery(state, DEFAULTS);
}

function compareUrl() {
  const query = new URLSearchParams({ ids: state.ids });
  if (state.metric) query.set("metric", state.metric);
  if (state.explainer) query.set("explainer", state.explainer);
  return url(`api/v1/compare?${query}`);
}

async function chooser() {
  const summaries = (await getJSON(url("api/v1/summaries?limit=1000"))).summaries.filter((s) => s.status !== "error" && s.created_at);
  const chosen = new Set();
  const button = el("button", { type: "button", class: "button primary", disabled: true, onclick: () => {
    window.location.href = url(`compare?ids=${[...chosen].join(",")}`);
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

// -- differences --------------------------------------------------------------------------------------------------

function warning() {
  if (!data.differences.length) {
    return data.summaries.length < 2 ? null : el("p", { class: "muted small", id: "compare-ok" },
      `Same ${plural(data.classes.matched, "class", "classes")}, model and samples in every run: the scores compare directly.`);
  }
  const title = data.comparable ? "Check before comparing:" : "These runs are not directly comparable.";
  return el("div", { class: "alert alert-warn", role: "alert", id: "compare-warning" },
    el("strong", {}, title),
    el("ul", {}, data.differences.map((d) => el("li", { dataset: { kind: d.kind } }, d.message))),
    el("p", { class: "small" }, `Only what every run has is matched: per-class rows for the ${plural(data.classes.matched, "class", "classes")} `
      + `all runs have (by name), and ${plural(data.shared_samples.total, "shared sample")} (by name).`
      + (data.comparable ? "" : " Differences are shown without colour and no value is marked best.")));
}

// -- score table ----------------------------------------------------------------------------------------------------

/** The best value of a row, or null when it is not a meaningful difference: fewer than two values, runs that are
 * not comparable, or a tie (values that read the same). */
function bestOf(values, higherIsBetter) {
  const defined = values.filter((v) => v !== null && v !== undefined);
  if (!data.comparable || defined.length < 2) return null;
  const best = higherIsBetter ? Math.max(...defined) : Math.min(...defined);
  return defined.filter((v) => score(v) === score(best)).length > 1 ? null : best;
}

function deltaCell(values, higherIsBetter) {
  const delta = values[0] !== null && values[0] !== undefined && values[1] !== null && values[1] !== undefined ? values[1] - values[0] : null;
  const zero = delta === null || score(delta) === score(0) || score(delta) === score(-0);
  const better = !data.comparable || zero ? "" : (delta > 0) === higherIsBetter ? " better" : " worse";
  const text = delta === null ? "–" : zero ? "0" : `${delta > 0 ? "+" : ""}${score(delta)}`;
  return el("td", { class: `num delta${better}${data.comparable ? "" : " plain"}` }, text);
}

function valueCells(values, higherIsBetter, counts) {
  const best = bestOf(values, higherIsBetter);
  const cells = values.map((v, i) => el("td", { class: `num${best !== null && v === best ? " best" : ""}`,
    title: counts ? `${counts[i]} values` : null }, score(v)));
  if (values.length === 2) cells.push(deltaCell(values, higherIsBetter));
  return cells;
}

function runHeads() {
  return [data.summaries.map((s) => el("th", { class: "num" }, el("a", { href: url(`s/${s.id}/scores`) }, s.name),
    el("div", { class: "muted small" }, s.path))), data.summaries.length === 2 ? el("th", { class: "num" }, "Δ second − first") : null];
}

function normalisationNote() {
  const declared = data.normalisation.filter((n) => !n.observed).map((n) => n.metric);
  const observed = data.normalisation.filter((n) => n.observed);
  const span = (n) => `${n.metric} [${fmt(n.bounds[0])}, ${fmt(n.bounds[1])}]`;
  return el("p", { class: "muted small norm-note", id: "normalisation-note" },
    "Comprehensive score: the equal-weight mean of each explainer's metrics put on [0, 1] (1 = best), normalised the same way for every compared run",
    declared.length ? ` — ${declared.join(", ")} within ${declared.length === 1 ? "its" : "their"} declared range` : "",
    observed.length ? `; ${observed.map(span).join(", ")}: an open range, so it spans the values of all compared runs together, not of each run` : "",
    ".");
}

function colourNote() {
  return el("p", { class: "muted small", id: "colour-note" }, data.comparable
    ? "The best value of each row is highlighted (not when values tie); Δ is green where the second run is better."
    : "Δ is not coloured and no value is marked best: the runs differ (see the warning above), so a higher score does not say which explainer is better.");
}

function scoreTable() {
  const metrics = Object.fromEntries(data.metrics.map((m) => [m.name, m]));
  const choices = [[COMPREHENSIVE, "Comprehensive score (equal weights)"], ...data.metrics.map((m) => [m.name, m.name]), [ALL, "All metrics"]];
  state.table = choices.some(([value]) => value === state.table) ? state.table : COMPREHENSIVE;
  const body = el("div", {});
  const arrow = (metric) => el("span", { class: `arrow ${metric.higher_is_better ? "up" : "down"}`,
    title: metric.higher_is_better ? "higher is better" : "lower is better" }, metric.higher_is_better ? "↑" : "↓");
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
    body, normalisationNote(), colourNote());
}

// -- per class ------------------------------------------------------------------------------------------------------

function classTable(container) {
  const perClass = data.per_class;
  const metric = data.metrics.find((m) => m.name === perClass.metric);
  let rows = perClass.rows;
  if (data.summaries.length === 2) {
    const gap = (r) => (r.values[0] === null || r.values[1] === null ? -1 : Math.abs(r.values[1] - r.values[0]));
    rows = [...rows].sort((a, b) => gap(b) - gap(a));
  }
  const shown = state.classes === "1" ? rows : rows.slice(0, CLASS_ROWS);
  const more = rows.length > shown.length
    ? el("button", { type: "button", class: "button small", onclick: () => { state.classes = "1"; save(); classTable(container); } }, `Show all ${rows.length.toLocaleString()} classes`)
    : null;
  fill(container, rows.length
    ? [el("div", { class: "table-scroll class-rows" }, el("table", { class: "table per-class" },
      el("thead", {}, el("tr", {}, el("th", {}, "Class"), runHeads())),
      el("tbody", {}, shown.map((r) => el("tr", { dataset: { name: r.name } }, el("th", { scope: "row" }, r.name),
        valueCells(r.values, metric ? metric.higher_is_better : true, r.counts)))))),
    el("p", { class: "muted small" }, `${plural(rows.length, "class", "classes")} with a ${perClass.metric} value, of the `
      + `${plural(data.classes.matched, "class", "classes")} every run has by name`
      + (data.summaries.length === 2 ? "; largest differences first." : "."), " ", more)]
    : el("p", { class: "empty" }, data.classes.matched ? "No class every run has was scored with this explainer and metric." : "The runs have no class in common (classes are matched by name)."));
}

function perClass() {
  if (!data.metrics.length) return null;
  state.metric = data.per_class.metric;
  state.explainer = data.per_class.explainer;
  const grid = el("div", { class: "chart-grid" });
  const table = el("div", {});
  const drawCharts = () => {
    fill(grid, data.summaries.map((s) => {
      const plot = el("div", { class: "chart" });
      const query = new URLSearchParams({ metric: state.metric, sort: "count", offset: "0", limit: String(CHART_CLASSES) });
      drawFigure(plot, url(`api/v1/summaries/${s.id}/figures/per-class-metric?${query}`));
      return el("section", { class: "card chart-card" }, el("h3", {}, s.name, " ", el("span", { class: "muted small" }, s.path)), plot);
    }));
  };
  const refetch = async () => {
    save();
    try {
      data.per_class = (await getJSON(compareUrl())).per_class;
      classTable(table);
    } catch (error) {
      showError(table, error);
    }
  };
  const metricPicker = el("select", { id: "class-metric", "aria-label": "metric per class", onchange: (event) => {
    state.metric = event.target.value;
    state.classes = "0";
    drawCharts();
    refetch();
  } }, data.metrics.map((m) => el("option", { value: m.name, selected: m.name === state.metric }, m.name)));
  const explainerPicker = el("select", { id: "class-explainer", "aria-label": "explainer per class", onchange: (event) => {
    state.explainer = event.target.value;
    state.classes = "0";
    refetch();
  } }, data.explainers.map((e) => el("option", { value: e, selected: e === state.explainer }, e)));
  drawCharts();
  classTable(table);
  return el("section", {},
    el("div", { class: "section-head" }, el("h2", {}, "Per class"), el("span", { class: "spacer" }), metricPicker),
    el("section", { class: "card" }, el("div", { class: "card-head" }, el("h3", {}, "Classes every run has"), el("span", { class: "spacer" }),
      el("span", { class: "field-label" }, "Explainer"), explainerPicker), table),
    grid);
}

// -- shared samples -------------------------------------------------------------------------------------------------

async function sampleRows(body, shared) {
  const samples = await Promise.all(data.summaries.map((s, i) => getJSON(url(`api/v1/summaries/${s.id}/samples/${shared.ids[i]}`)).catch(() => null)));
  const first = samples.find(Boolean);
  if (!first) {
    fill(body, el("p", { class: "empty" }, "This sample cannot be read."));
    return;
  }
  const explained = first.labels.filter((l) => l.type);
  const labels = explained.length ? explained : first.labels;
  let labelName = labels.some((l) => l.name === state.label) ? state.label : (labels.find((l) => l.ground_truth) || labels[0]).name;
  const labelPicker = el("select", { "aria-label": "label to compare", onchange: (event) => { state.label = event.target.value; save(); drawRows(); } },
    first.labels.map((l) => el("option", { value: l.name, selected: l.name === labelName }, `${l.name}${l.ground_truth ? " ★" : ""}`)));
  const rows = el("div", { class: "compare-rows" });
  const drawRows = () => {
    labelName = labelPicker.value;
    fill(rows, data.summaries.map((s, i) => {
      const sample = samples[i];
      if (!sample) return el("div", { class: "compare-row" }, el("div", { class: "run-name" }, s.name), el("p", { class: "muted" }, "sample missing"));
      const size = requestSize(MAP_PX, sample.width && sample.height ? Math.max(sample.width, sample.height) : null);
      const label = sample.labels.find((l) => l.name === labelName); // classes are matched by name across runs
      const maps = label && label.saliency.length
        ? label.saliency.map((m) => el("figure", { class: "map-figure" },
          el("img", { class: "map", src: sized(m.url, size, "overlay=1&alpha=0.5"), width: String(MAP_PX), height: String(MAP_PX),
            alt: `${m.explainer} map in ${s.name}` }),
          el("figcaption", {}, m.explainer)))
        : [el("div", { class: "map-missing" }, label ? "not explained for this label" : "no such class in this run")];
      return el("div", { class: "compare-row" },
        el("div", { class: "run-name" }, el("a", { href: url(`s/${s.id}`) }, s.name),
          label ? el("div", { class: "small" }, `p = ${fmt(label.prob, 3)} `, typeBadge(label.type)) : null),
        el("figure", { class: "map-figure" }, el("img", { class: "sample-image", src: sized(sample.image_url, size), width: String(MAP_PX), height: String(MAP_PX),
          alt: sample.name }), el("figcaption", {}, "input")),
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

function runChip(s) {
  const model = s.model && s.model.class ? `${s.model.class}${s.model.num_parameters ? ` · ${s.model.num_parameters.toLocaleString()} params` : ""}` : null;
  const size = s.image_size && s.image_size[0] ? `${s.image_size[1]}×${s.image_size[0]}` : null;
  return el("a", { class: "run-chip", href: url(`s/${s.id}`) },
    el("strong", {}, s.name), el("span", { class: "muted" }, s.path), statusBadge(s),
    el("span", { class: "run-facts muted small" }, [plural(s.num_samples, "sample"), plural(s.num_classes, "class", "classes"), model, size].filter(Boolean).join(" · ")));
}

async function start() {
  const query = readQuery();
  const ids = list(query.ids);
  state = { ids: ids.join(","), table: query.table || COMPREHENSIVE, metric: query.metric || null, explainer: query.explainer || null,
    sample: query.sample || null, label: query.label || null, classes: query.classes === "1" ? "1" : "0" };
  if (!ids.length) {
    await chooser();
    return;
  }
  try {
    data = await getJSON(compareUrl());
  } catch (error) {
    if (error.status !== 400 || !(state.metric || state.explainer)) throw error;
    state.metric = null; // a metric or explainer of an old link that these runs no longer have
    state.explainer = null;
    data = await getJSON(compareUrl());
  }
  note.textContent = `${plural(data.summaries.length, "run")}: ${data.summaries.map((s) => s.name).join(" · ")}`;
  fill(root, el("div", { class: "run-chips" }, data.summaries.map(runChip)), warning(), scoreTable(), perClass(), sharedSamples());
}

start().catch((error) => showError(root, error));
