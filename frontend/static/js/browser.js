// The saliency browser: samples with their labels and one map per selected explainer, filtered, sorted and paged.
// The whole view lives in the URL query (filters, display, the label picked in a row, the large view), so reloading
// or sharing the link shows the same thing.
import { TYPES, el, fill, getJSON, list, plural, readQuery, requestSize, showError, sized, summaryHeader, swatch,
  typeLegend, url, writeQuery } from "./util.js";
import { CMAPS, SIGNS, convergenceFilter, displayControls, explainerFilter, field, sortControl, typeFilter } from "./controls.js";
import { GRID_PX, labelButton, mapImage, nativeSize } from "./cells.js";
import { LABEL_SORTS, labelFilter } from "./label_filter.js";
import { createZoom } from "./zoom.js";

const SUMMARY = document.body.dataset.summary;
const API = url(`api/v1/summaries/${SUMMARY}`);
const POLL_MS = 5000;
const PAGE_SIZES = [10, 20, 50, 100, 200];
const DEFAULTS = { labels: [], types: [], truth: [], explainers: null, sort: "-prob", unconverged: "0", offset: 0, limit: 20, overlay: "1",
  alpha: "0.5", cmap: "inferno", sign: "absolute", rl: [], zoom: null, zl: null, lsort: "count", lall: "0",
  il: null, isort: "head", ihead: null };
const INSIDE_SORTS = ["head", "entropy", "box"];

const head = document.getElementById("head");
const controls = document.getElementById("controls");
const results = document.getElementById("results");

let detail = null;
let state = {};
let page = { total: 0, samples: [] };
let colors = new Map();
let filter = null;
const activeLabel = new Map(); // sample id -> label index picked in its row
let focusedRow = -1;
let loadController = null;

// -- state <-> URL ------------------------------------------------------------------------------------------------

function readState() {
  const q = readQuery();
  const explainerNames = detail.explainers.map((e) => e.name);
  const labelIndexes = new Set(detail.labels.map((l) => l.index));
  const int = (text, fallback) => (/^\d+$/.test(text || "") ? parseInt(text, 10) : fallback);
  const indexes = (text) => [...new Set(list(text).filter((t) => /^\d+$/.test(t)).map(Number).filter((i) => labelIndexes.has(i)))];
  const explainers = q.explainers === undefined ? null : list(q.explainers).filter((name) => explainerNames.includes(name));
  return {
    labels: indexes(q.labels).sort((a, b) => a - b),
    types: list(q.types).filter((t) => TYPES.includes(t)),
    truth: indexes(q.truth),
    explainers: explainers && explainers.length ? explainers : null,
    sort: q.sort || DEFAULTS.sort,
    unconverged: q.unconverged === "1" ? "1" : "0",
    offset: int(q.offset, 0),
    limit: PAGE_SIZES.includes(int(q.limit, 0)) ? int(q.limit, 0) : DEFAULTS.limit,
    overlay: q.overlay === "0" ? "0" : "1",
    alpha: Number.isFinite(parseFloat(q.alpha)) ? String(Math.min(1, Math.max(0, parseFloat(q.alpha)))) : DEFAULTS.alpha,
    cmap: CMAPS.includes(q.cmap) ? q.cmap : (q.sign === "all" ? "RdBu" : DEFAULTS.cmap),
    sign: q.sign in SIGNS ? q.sign : DEFAULTS.sign,
    rl: list(q.rl).filter((pair) => /^\d+:\d+$/.test(pair)),
    zoom: /^\d+$/.test(q.zoom || "") ? q.zoom : null,
    zl: /^\d+$/.test(q.zl || "") ? q.zl : null,
    lsort: q.lsort in LABEL_SORTS ? q.lsort : DEFAULTS.lsort,
    lall: q.lall === "1" ? "1" : "0",
    // the zoom view's Inside panel: a layer the sample lacks falls back to its first when drawn
    il: q.il || null,
    isort: INSIDE_SORTS.includes(q.isort) ? q.isort : DEFAULTS.isort,
    ihead: /^\d+$/.test(q.ihead || "") ? q.ihead : null,
  };
}

function saveState(push = false) {
  writeQuery(state, DEFAULTS, push);
}

/** Row labels from the URL's `rl=sample:label,...`. */
function loadRowLabels() {
  activeLabel.clear();
  for (const pair of state.rl) {
    const [sample, label] = pair.split(":").map(Number);
    activeLabel.set(sample, label);
  }
}

/** Only the rows of this page whose picked label is not their default go into the URL. */
function syncRowLabels() {
  state.rl = page.samples.filter((s) => activeLabel.has(s.id) && activeLabel.get(s.id) !== defaultLabel(s)
    && s.labels.some((l) => l.index === activeLabel.get(s.id))).map((s) => `${s.id}:${activeLabel.get(s.id)}`);
}

function selectedExplainers() {
  return state.explainers || detail.explainers.map((e) => e.name);
}

function renderQuery() {
  return new URLSearchParams({ overlay: state.overlay, alpha: state.alpha, cmap: state.cmap, sign: state.sign }).toString();
}

function labelName(index) {
  const label = detail.labels.find((l) => l.index === index);
  return label ? label.name : String(index);
}

// -- controls -----------------------------------------------------------------------------------------------------

function filtersChanged() {
  state.offset = 0;
  reload(true);
}

/** Removable chips for the filters that have no control of their own (the ground truth, set by links). */
function activeFilters() {
  if (!state.truth.length) return null;
  return el("div", { class: "active-filters", id: "active-filters" }, el("span", { class: "field-label" }, "Also filtered by"),
    state.truth.map((index) => el("span", { class: "filter-chip", dataset: { truth: String(index) } },
      el("span", {}, "ground truth: ", el("strong", {}, labelName(index))),
      el("button", { type: "button", class: "chip-remove", title: "remove this filter", "aria-label": `remove the ground truth filter ${labelName(index)}`,
        onclick: () => {
          state.truth = state.truth.filter((i) => i !== index);
          renderControls();
          filtersChanged();
        } }, "✕"))));
}

function renderControls() {
  const view = { labels: detail.labels, selected: state.labels, sort: state.lsort, showAll: state.lall === "1", types: state.types };
  filter = labelFilter(view, (selected) => { state.labels = selected; filtersChanged(); },
    () => { state.lsort = view.sort; state.lall = view.showAll ? "1" : "0"; saveState(); });
  const display = () => { saveState(); refreshImages(); };
  fill(controls,
    el("div", { class: "control-row" },
      field("Labels", filter.node),
      field("Prediction types", typeFilter(state, () => { view.types = state.types; filtersChanged(); })),
      field("Sort by", sortControl(detail, state, filtersChanged)),
      detail.counts.num_ig_paths ? field("Integrated Gradients", convergenceFilter(state, filtersChanged)) : null,
      field("Explainers", explainerFilter(detail, state, () => reload(true)))),
    activeFilters(),
    el("div", { class: "control-row" }, ...displayControls(state, display),
      el("div", { class: "field legend-field" }, el("span", { class: "field-label" }, "Legend"), typeLegend())));
}

// -- results ------------------------------------------------------------------------------------------------------

function defaultLabel(sample) {
  const matches = sample.labels.filter((l) => (!state.labels.length || state.labels.includes(l.index)) && (!state.types.length || state.types.includes(l.type)));
  const truth = !state.labels.length && state.truth.length ? matches.find((l) => state.truth.includes(l.index)) : null;
  return (truth || matches[0] || sample.labels[0] || {}).index;
}

function labelOf(sample) {
  const index = activeLabel.get(sample.id);
  const label = sample.labels.find((l) => l.index === index);
  return label || sample.labels.find((l) => l.index === defaultLabel(sample));
}

function pickLabel(sample, index) {
  activeLabel.set(sample.id, index);
  syncRowLabels();
  saveState();
  const row = results.querySelector(`tr[data-sample="${sample.id}"]`);
  if (row) row.replaceWith(sampleRow(sample, parseInt(row.dataset.position, 10)));
}

function sampleRow(sample, position) {
  const label = labelOf(sample);
  const size = requestSize(GRID_PX, nativeSize(sample));
  const image = el("button", { type: "button", class: "thumb", title: "open the large view", onclick: () => zoom.open(sample.id, label && label.index) },
    el("img", { class: "sample-image", src: sized(sample.image_url, size), width: String(GRID_PX), height: String(GRID_PX), alt: sample.name,
      loading: "lazy", decoding: "async" }));
  return el("tr", { class: "sample-row", tabindex: "0", dataset: { sample: String(sample.id), position: String(position) },
    onfocus: () => { focusedRow = position; } },
    el("td", { class: "sample-cell sticky-col" }, image, el("div", { class: "sample-name", title: sample.name }, sample.name),
      el("div", { class: "muted small" }, `#${sample.id}`)),
    el("td", { class: "labels-cell sticky-col" }, el("div", { class: "label-list" },
      sample.labels.map((l) => labelButton(l, label && l.index === label.index, (index) => pickLabel(sample, index))))),
    selectedExplainers().map((explainer) => el("td", { class: "map-cell" }, mapImage(sample, label, explainer, renderQuery(), size, true))));
}

function pager() {
  const first = page.total ? state.offset + 1 : 0;
  const last = Math.min(page.total, state.offset + state.limit);
  const pages = Math.max(1, Math.ceil(page.total / state.limit));
  const current = Math.floor(state.offset / state.limit) + 1;
  const go = (offset) => { state.offset = offset; reload(true); window.scrollTo({ top: 0 }); };
  return el("div", { class: "pager" },
    el("span", { class: "pager-info" }, page.total ? `${first.toLocaleString()}–${last.toLocaleString()} of ${plural(page.total, "sample")}` : "no samples"),
    el("span", { class: "spacer" }),
    el("button", { type: "button", class: "button", "data-action": "prev", disabled: state.offset <= 0, onclick: () => go(Math.max(0, state.offset - state.limit)) }, "‹ Previous"),
    el("span", { class: "pager-page" }, `page ${current} of ${pages}`),
    el("button", { type: "button", class: "button", "data-action": "next", disabled: last >= page.total, onclick: () => go(state.offset + state.limit) }, "Next ›"),
    el("label", { class: "page-size" }, "per page ",
      el("select", { "aria-label": "samples per page", onchange: (event) => { state.limit = parseInt(event.target.value, 10); state.offset = 0; reload(true); } },
        PAGE_SIZES.map((n) => el("option", { value: String(n), selected: n === state.limit }, String(n))))));
}

function renderResults() {
  const explainers = selectedExplainers();
  if (!page.samples.length) {
    const filtered = state.labels.length || state.types.length || state.truth.length || state.unconverged === "1";
    fill(results, el("div", { class: "card empty" },
      el("p", {}, filtered ? "No sample matches these filters." : detail.status === "running" ? "No sample written yet; this page updates as the run goes on." : "This summary has no samples."),
      filtered ? el("p", { class: "muted" }, state.unconverged === "1" ? "Every Integrated Gradients map of the matching samples converged." : "Clear the label, type or ground truth filter to see every sample.") : null));
    return;
  }
  const table = el("table", { class: "table samples" },
    el("thead", {}, el("tr", {}, el("th", { class: "sticky-col" }, "Sample"), el("th", { class: "sticky-col" }, "Labels  (★ ground truth · probability · type)"),
      explainers.map((name) => el("th", { class: "map-head", dataset: { explainer: name } }, swatch(colors.get(name)), name)))),
    el("tbody", {}, page.samples.map((sample, i) => sampleRow(sample, i))));
  const hint = explainers.length > 4 ? el("span", { class: "muted small" }, `${explainers.length} explainers: scroll the maps sideways; sample and labels stay in place.`) : null;
  fill(results, pager(), el("div", { class: "card table-scroll grid-scroll" }, table), pager(),
    el("p", { class: "muted small keys" }, "Keys: ↑/↓ or j/k move between rows · ←/→ change page · Enter opens the large view · 1–9 pick a label · o toggles the overlay",
      hint ? " · " : "", hint));
  if (focusedRow >= 0) focusRow(Math.min(focusedRow, page.samples.length - 1), false);
}

function refreshImages() {
  for (const img of results.querySelectorAll("img.map")) {
    img.src = sized(img.dataset.base, img.dataset.size ? parseInt(img.dataset.size, 10) : null, renderQuery());
  }
}

async function reload(push = false) {
  saveState(push);
  if (loadController) loadController.abort();
  loadController = new AbortController();
  const query = new URLSearchParams({ sort: state.sort, offset: String(state.offset), limit: String(state.limit), explainers: selectedExplainers().join(",") });
  if (state.labels.length) query.set("labels", state.labels.join(","));
  if (state.types.length) query.set("types", state.types.join(","));
  if (state.truth.length) query.set("truth", state.truth.join(","));
  if (state.unconverged === "1") query.set("unconverged", "1");
  results.classList.add("loading");
  try {
    page = await getJSON(`${API}/samples?${query}`, { signal: loadController.signal });
    if (page.total && state.offset >= page.total) {
      state.offset = Math.floor((page.total - 1) / state.limit) * state.limit;
      return reload(false);
    }
    results.classList.remove("loading");
    syncRowLabels();
    saveState();
    renderResults();
  } catch (error) {
    if (error.name === "AbortError") return;
    results.classList.remove("loading");
    showError(results, error);
  }
}

// -- zoom view ----------------------------------------------------------------------------------------------------

const zoom = createZoom({
  api: API,
  dialog: document.getElementById("zoom"),
  explainers: selectedExplainers,
  get colors() { return colors; },
  render: renderQuery,
  samples: () => page.samples,
  labelOf,
  onShow: (sampleId, labelIndex) => {
    state.zoom = String(sampleId);
    state.zl = labelIndex === null ? null : String(labelIndex);
    saveState();
  },
  onClose: () => {
    Object.assign(state, { zoom: null, zl: null, il: null, isort: DEFAULTS.isort, ihead: DEFAULTS.ihead });
    saveState();
  },
  insideView: () => ({ layer: state.il, sort: state.isort, head: state.ihead === null ? null : parseInt(state.ihead, 10) }),
  onInsideView: (view) => {
    Object.assign(state, { il: view.layer, isort: view.sort, ihead: view.head === null ? null : String(view.head) });
    saveState();
  },
});

document.addEventListener("click", (event) => {
  const dropdown = document.getElementById("label-filter");
  // the path as dispatched: a click may have replaced the element it hit (the filter redraws its list)
  if (dropdown && dropdown.open && !event.composedPath().includes(dropdown)) dropdown.open = false;
});

// -- keyboard -----------------------------------------------------------------------------------------------------

function focusRow(index, scroll = true) {
  const rows = results.querySelectorAll("tr.sample-row");
  if (!rows.length) return;
  focusedRow = Math.max(0, Math.min(rows.length - 1, index));
  rows[focusedRow].focus({ preventScroll: !scroll });
}

document.addEventListener("keydown", (event) => {
  if (zoom.isOpen || event.altKey || event.ctrlKey || event.metaKey) return;
  const tag = (event.target.tagName || "").toLowerCase();
  if (["input", "select", "textarea"].includes(tag) || event.target.isContentEditable) return;
  const sample = page.samples[focusedRow];
  if (event.key === "ArrowDown" || event.key === "j") { event.preventDefault(); focusRow(focusedRow + 1); }
  else if (event.key === "ArrowUp" || event.key === "k") { event.preventDefault(); focusRow(focusedRow - 1); }
  else if (event.key === "ArrowRight" && state.offset + state.limit < page.total) { state.offset += state.limit; focusedRow = 0; reload(true); }
  else if (event.key === "ArrowLeft" && state.offset > 0) { state.offset = Math.max(0, state.offset - state.limit); focusedRow = 0; reload(true); }
  else if ((event.key === "Enter" || event.key === "z") && sample && tag === "tr") { event.preventDefault(); zoom.open(sample.id, labelOf(sample) && labelOf(sample).index); }
  else if (event.key === "o") { const box = document.getElementById("overlay"); box.checked = !box.checked; box.dispatchEvent(new Event("change")); }
  else if (/^[1-9]$/.test(event.key) && sample) {
    const label = sample.labels[parseInt(event.key, 10) - 1];
    if (label) { pickLabel(sample, label.index); focusRow(focusedRow, false); }
  }
});

// -- live updates -------------------------------------------------------------------------------------------------

async function poll() {
  if (document.hidden || !detail || detail.status !== "running") return;
  try {
    const fresh = await getJSON(API);
    const grew = fresh.num_samples !== detail.num_samples;
    detail = fresh;
    fill(head, summaryHeader(detail, "browser"));
    if (filter) filter.update(detail.labels);
    if (grew && !zoom.isOpen) reload(false);
  } catch (_) {
    // the next poll tries again
  }
}

async function start() {
  try {
    detail = await getJSON(API);
  } catch (error) {
    showError(results, error);
    return;
  }
  colors = new Map(detail.explainers.map((e) => [e.name, e.color]));
  state = readState();
  loadRowLabels();
  fill(head, summaryHeader(detail, "browser"));
  renderControls();
  await reload(false);
  if (state.zoom) zoom.open(parseInt(state.zoom, 10), state.zl === null ? undefined : parseInt(state.zl, 10));
  setInterval(poll, POLL_MS);
}

window.addEventListener("popstate", () => {
  if (!detail) return;
  state = readState();
  loadRowLabels();
  renderControls();
  reload(false);
  if (state.zoom && !zoom.isOpen) zoom.open(parseInt(state.zoom, 10), state.zl === null ? undefined : parseInt(state.zl, 10));
  if (!state.zoom && zoom.isOpen) zoom.close();
});

start();
