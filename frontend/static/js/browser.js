// The saliency browser: samples with their labels and one map per selected explainer, filtered, sorted and paged.
// The whole view lives in the URL query, so reloading or sharing the link shows the same thing.
import { TYPES, TYPE_HELP, el, fill, fmt, getJSON, list, plural, readQuery, showError, summaryHeader, typeBadge,
  typeLegend, writeQuery, debounce } from "./util.js";

const SUMMARY = document.body.dataset.summary;
const API = `/api/v1/summaries/${SUMMARY}`;
const POLL_MS = 5000;
const GRID_SIZE = 256;
const ZOOM_SIZE = 512;
const PAGE_SIZES = [10, 20, 50, 100, 200];
const CMAPS = ["inferno", "viridis", "magma", "jet", "gray", "RdBu"];
const SIGNS = { absolute: "absolute |r|", positive: "positive", negative: "negative", all: "signed (all)" };
const DEFAULTS = { labels: [], types: [], explainers: null, sort: "-prob", offset: 0, limit: 20, overlay: "1",
  alpha: "0.5", cmap: "inferno", sign: "absolute", zoom: null, zl: null };

const head = document.getElementById("head");
const controls = document.getElementById("controls");
const results = document.getElementById("results");
const zoom = document.getElementById("zoom");

let detail = null;
let state = {};
let page = { total: 0, samples: [] };
const activeLabel = new Map(); // sample id -> label index shown in its row
let focusedRow = -1;
let loadController = null;

// -- state <-> URL ------------------------------------------------------------------------------------------------

function readState() {
  const q = readQuery();
  const explainerNames = detail.explainers.map((e) => e.name);
  const labelIndexes = new Set(detail.labels.map((l) => l.index));
  const int = (text, fallback) => (/^\d+$/.test(text || "") ? parseInt(text, 10) : fallback);
  const explainers = q.explainers === undefined ? null : list(q.explainers).filter((name) => explainerNames.includes(name));
  return {
    labels: list(q.labels).map(Number).filter((i) => labelIndexes.has(i)),
    types: list(q.types).filter((t) => TYPES.includes(t)),
    explainers: explainers && explainers.length ? explainers : null,
    sort: q.sort || DEFAULTS.sort,
    offset: int(q.offset, 0),
    limit: PAGE_SIZES.includes(int(q.limit, 0)) ? int(q.limit, 0) : DEFAULTS.limit,
    overlay: q.overlay === "0" ? "0" : "1",
    alpha: Number.isFinite(parseFloat(q.alpha)) ? String(Math.min(1, Math.max(0, parseFloat(q.alpha)))) : DEFAULTS.alpha,
    cmap: CMAPS.includes(q.cmap) ? q.cmap : (q.sign === "all" ? "RdBu" : DEFAULTS.cmap),
    sign: q.sign in SIGNS ? q.sign : DEFAULTS.sign,
    zoom: /^\d+$/.test(q.zoom || "") ? q.zoom : null,
    zl: /^\d+$/.test(q.zl || "") ? q.zl : null,
  };
}

function saveState(push = false) {
  writeQuery(state, DEFAULTS, push);
}

function selectedExplainers() {
  return state.explainers || detail.explainers.map((e) => e.name);
}

function renderParams(size) {
  const params = new URLSearchParams({ overlay: state.overlay, alpha: state.alpha, cmap: state.cmap, sign: state.sign, size: String(size) });
  return params.toString();
}

function withParams(url, params) {
  return url + (url.includes("?") ? "&" : "?") + params;
}

// -- controls -----------------------------------------------------------------------------------------------------

function field(label, ...children) {
  return el("div", { class: "field" }, el("span", { class: "field-label" }, label), ...children);
}

function labelSummaryText() {
  if (!state.labels.length) return "All labels";
  const names = state.labels.map((i) => detail.labels.find((l) => l.index === i).name);
  return names.length <= 2 ? names.join(", ") : `${names.length} labels`;
}

function labelDropdown() {
  const summaryText = el("span", { class: "dropdown-text" }, labelSummaryText());
  const search = el("input", { type: "search", class: "menu-search", placeholder: "Find a label", "aria-label": "find a label" });
  const options = el("div", { class: "menu-options" }, detail.labels.map((label) => {
    const counts = label.counts;
    return el("label", { class: "menu-option", dataset: { name: label.name.toLowerCase() } },
      el("input", { type: "checkbox", value: String(label.index), checked: state.labels.includes(label.index), "aria-label": `label ${label.name}`,
        onchange: (event) => {
          const index = label.index;
          state.labels = event.target.checked ? [...state.labels, index].sort((a, b) => a - b) : state.labels.filter((i) => i !== index);
          summaryText.textContent = labelSummaryText();
          state.offset = 0;
          reload(true);
        } }),
      el("span", { class: "option-name" }, label.name),
      el("span", { class: "option-counts" }, TYPES.map((t) => el("span", { class: `count count-${t}`, title: `${t}: ${TYPE_HELP[t]}` }, `${t} ${counts[t]}`))));
  }));
  search.addEventListener("input", () => {
    const needle = search.value.trim().toLowerCase();
    for (const option of options.children) option.hidden = needle && !option.dataset.name.includes(needle);
  });
  const clear = el("button", { type: "button", class: "button small", onclick: () => {
    state.labels = [];
    for (const box of options.querySelectorAll("input")) box.checked = false;
    summaryText.textContent = labelSummaryText();
    state.offset = 0;
    reload(true);
  } }, "Clear");
  const details = el("details", { class: "dropdown", id: "label-filter" },
    el("summary", { class: "button" }, summaryText, el("span", { class: "caret", "aria-hidden": "true" }, "▾")),
    el("div", { class: "menu" }, search, options, el("div", { class: "menu-actions" }, clear)));
  return details;
}

function typeFilter() {
  return el("div", { class: "toggle-group", role: "group", "aria-label": "prediction types" }, TYPES.map((type) =>
    el("label", { class: `toggle type-toggle toggle-${type}`, title: TYPE_HELP[type] },
      el("input", { type: "checkbox", name: "type", value: type, checked: state.types.includes(type), onchange: (event) => {
        state.types = event.target.checked ? TYPES.filter((t) => t === type || state.types.includes(t)) : state.types.filter((t) => t !== type);
        state.offset = 0;
        reload(true);
      } }),
      el("span", {}, type))));
}

function explainerFilter() {
  const names = detail.explainers.map((e) => e.name);
  const group = el("div", { class: "toggle-group", role: "group", "aria-label": "explainers" });
  const sync = () => {
    const chosen = selectedExplainers();
    for (const box of group.querySelectorAll("input")) box.disabled = chosen.length === 1 && box.checked;
  };
  for (const name of names) {
    group.append(el("label", { class: "toggle" },
      el("input", { type: "checkbox", name: "explainer", value: name, checked: selectedExplainers().includes(name), onchange: (event) => {
        const chosen = new Set(selectedExplainers());
        if (event.target.checked) chosen.add(name); else chosen.delete(name);
        const ordered = names.filter((n) => chosen.has(n));
        state.explainers = ordered.length === names.length ? null : ordered;
        sync();
        reload(true);
      } }),
      el("span", {}, name)));
  }
  sync();
  return names.length ? group : el("span", { class: "muted" }, "no explainers");
}

function sortOptions() {
  const options = [["prob", "probability"], ["name", "name"], ["id", "dataset index"]];
  if (detail.uncertainty) options.splice(1, 0, ["uncertainty", "uncertainty (sd)"]);
  for (const explainer of detail.explainers) {
    for (const metric of detail.metrics) options.push([`score:${explainer.name}:${metric.name}`, `${metric.name} of ${explainer.name}`]);
  }
  return options;
}

function sortControl() {
  const key = state.sort.replace(/^-/, "");
  const descending = state.sort.startsWith("-");
  const select = el("select", { id: "sort", "aria-label": "sort by", onchange: () => {
    state.sort = (direction.dataset.desc === "1" ? "-" : "") + select.value;
    state.offset = 0;
    reload(true);
  } }, sortOptions().map(([value, text]) => el("option", { value, selected: value === key }, text)));
  const direction = el("button", { type: "button", class: "button icon", id: "sort-direction",
    title: descending ? "descending (click for ascending)" : "ascending (click for descending)",
    dataset: { desc: descending ? "1" : "0" }, onclick: () => {
      const desc = direction.dataset.desc !== "1";
      direction.dataset.desc = desc ? "1" : "0";
      direction.textContent = desc ? "↓" : "↑";
      direction.title = desc ? "descending (click for ascending)" : "ascending (click for descending)";
      state.sort = (desc ? "-" : "") + select.value;
      state.offset = 0;
      reload(true);
    } }, descending ? "↓" : "↑");
  return el("div", { class: "inline" }, select, direction);
}

function displayControls() {
  const colorbar = el("img", { class: "colorbar", alt: `${state.cmap} colour scale`, src: `/api/v1/colormaps/${state.cmap}` });
  const scale = el("span", { class: "scale-labels" }, el("span", {}, state.sign === "all" ? "−" : "low"), el("span", {}, state.sign === "all" ? "+" : "high"));
  const overlay = el("label", { class: "switch" },
    el("input", { type: "checkbox", id: "overlay", role: "switch", checked: state.overlay === "1", onchange: (event) => {
      state.overlay = event.target.checked ? "1" : "0";
      saveState();
      refreshImages();
    } }),
    el("span", { class: "switch-track", "aria-hidden": "true" }), el("span", {}, "Overlay"));
  const alphaValue = el("output", { class: "alpha-value" }, `${Math.round(parseFloat(state.alpha) * 100)}%`);
  const applyAlpha = debounce(() => { saveState(); refreshImages(); }, 150);
  const alpha = el("input", { type: "range", id: "alpha", min: "0", max: "1", step: "0.05", value: state.alpha, "aria-label": "overlay opacity",
    oninput: (event) => {
      state.alpha = event.target.value;
      alphaValue.textContent = `${Math.round(parseFloat(state.alpha) * 100)}%`;
      applyAlpha();
    } });
  const cmap = el("select", { id: "cmap", "aria-label": "colormap", onchange: (event) => {
    state.cmap = event.target.value;
    colorbar.src = `/api/v1/colormaps/${state.cmap}`;
    colorbar.alt = `${state.cmap} colour scale`;
    saveState();
    refreshImages();
  } }, CMAPS.map((name) => el("option", { value: name, selected: name === state.cmap }, name)));
  const sign = el("select", { id: "sign", "aria-label": "which relevance to show", onchange: (event) => {
    state.sign = event.target.value;
    scale.firstChild.textContent = state.sign === "all" ? "−" : "low";
    scale.lastChild.textContent = state.sign === "all" ? "+" : "high";
    saveState();
    refreshImages();
  } }, Object.entries(SIGNS).map(([value, text]) => el("option", { value, selected: value === state.sign }, text)));
  return [
    field("Display", el("div", { class: "inline" }, overlay, alpha, alphaValue)),
    field("Colormap", el("div", { class: "inline" }, cmap, sign, el("span", { class: "colorbar-wrap" }, colorbar, scale))),
  ];
}

function renderControls() {
  fill(controls,
    el("div", { class: "control-row" },
      field("Labels", labelDropdown()),
      field("Prediction types", typeFilter()),
      field("Explainers", explainerFilter()),
      field("Sort by", sortControl())),
    el("div", { class: "control-row" }, ...displayControls(),
      el("div", { class: "field legend-field" }, el("span", { class: "field-label" }, "Legend"), typeLegend())));
}

// -- results ------------------------------------------------------------------------------------------------------

function defaultLabel(sample) {
  const matches = sample.labels.filter((l) => (!state.labels.length || state.labels.includes(l.index)) && (!state.types.length || state.types.includes(l.type)));
  return (matches[0] || sample.labels[0] || {}).index;
}

function labelOf(sample) {
  const index = activeLabel.get(sample.id);
  const label = sample.labels.find((l) => l.index === index);
  return label || sample.labels.find((l) => l.index === defaultLabel(sample));
}

function probability(label) {
  const bar = el("span", { class: "prob-bar" }, el("span", { class: "prob-fill" }));
  bar.firstChild.style.width = `${Math.max(0, Math.min(1, label.prob)) * 100}%`;
  const interval = label.interval
    ? el("span", { class: "interval", title: `95% interval, sd ${fmt(label.sd, 3)}` }, `[${label.interval[0].toFixed(2)}, ${label.interval[1].toFixed(2)}]`)
    : label.sd !== null && label.sd !== undefined ? el("span", { class: "interval" }, `± ${fmt(label.sd, 2)}`) : null;
  return el("span", { class: "prob" }, bar, el("span", { class: "prob-value" }, label.prob < 0.001 ? "<0.001" : label.prob.toFixed(3)), interval);
}

function labelButton(sample, label, active, onpick) {
  return el("button", { type: "button", class: `label-chip${active ? " active" : ""}`, "aria-pressed": active ? "true" : "false",
    dataset: { label: String(label.index) }, title: `show the maps for ${label.name}`, onclick: () => onpick(label.index) },
    label.ground_truth ? el("span", { class: "gt-mark", title: "ground truth" }, "★") : el("span", { class: "gt-mark gt-none" }, ""),
    el("span", { class: "label-name" }, label.name),
    probability(label),
    typeBadge(label.type));
}

function mapFigure(sample, label, explainer, size) {
  const map = label && label.saliency.find((s) => s.explainer === explainer);
  if (!map) return el("div", { class: "map-missing" }, label ? "no map" : "–");
  return el("img", { class: "map", src: withParams(map.url, renderParams(size)), width: String(size / 2), height: String(size / 2),
    alt: `${explainer} map of ${label.name} for ${sample.name}`, dataset: { base: map.url, explainer } });
}

function sampleRow(sample, position) {
  const label = labelOf(sample);
  const explainers = selectedExplainers();
  const pick = (index) => {
    activeLabel.set(sample.id, index);
    const row = results.querySelector(`tr[data-sample="${sample.id}"]`);
    if (row) row.replaceWith(sampleRow(sample, position));
  };
  const image = el("button", { type: "button", class: "thumb", title: "open the large view", onclick: () => openZoom(sample.id, label && label.index) },
    el("img", { class: "sample-image", src: withParams(sample.image_url, `size=${GRID_SIZE}`), width: "128", height: "128", alt: sample.name }));
  return el("tr", { class: "sample-row", tabindex: "0", dataset: { sample: String(sample.id), position: String(position) },
    onfocus: () => { focusedRow = position; } },
    el("td", { class: "sample-cell" }, image, el("div", { class: "sample-name", title: sample.name }, sample.name), el("div", { class: "muted small" }, `#${sample.id}`)),
    el("td", { class: "labels-cell" }, el("div", { class: "label-list" }, sample.labels.map((l) => labelButton(sample, l, label && l.index === label.index, pick)))),
    explainers.map((explainer) => el("td", { class: "map-cell" }, mapFigure(sample, label, explainer, GRID_SIZE))));
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
    const filtered = state.labels.length || state.types.length;
    fill(results, el("div", { class: "card empty" },
      el("p", {}, filtered ? "No sample matches these filters." : detail.status === "running" ? "No sample written yet; this page updates as the run goes on." : "This summary has no samples."),
      filtered ? el("p", { class: "muted" }, "Clear the label or type filter to see every sample.") : null));
    return;
  }
  const table = el("table", { class: "table samples" },
    el("thead", {}, el("tr", {}, el("th", {}, "Sample"), el("th", {}, "Labels  (★ ground truth · probability · type)"),
      explainers.map((name) => el("th", { class: "map-head" }, name)))),
    el("tbody", {}, page.samples.map((sample, i) => sampleRow(sample, i))));
  fill(results, pager(), el("div", { class: "card table-scroll" }, table), pager(),
    el("p", { class: "muted small keys" }, "Keys: ↑/↓ or j/k move between rows · ←/→ change page · Enter opens the large view · 1–9 pick a label · o toggles the overlay"));
  if (focusedRow >= 0) focusRow(Math.min(focusedRow, page.samples.length - 1), false);
}

function refreshImages() {
  for (const img of document.querySelectorAll("img.map")) {
    const size = img.closest("dialog") ? ZOOM_SIZE : GRID_SIZE;
    img.src = withParams(img.dataset.base, renderParams(size));
  }
}

async function reload(push = false) {
  saveState(push);
  if (loadController) loadController.abort();
  loadController = new AbortController();
  const query = new URLSearchParams({ sort: state.sort, offset: String(state.offset), limit: String(state.limit), explainers: selectedExplainers().join(",") });
  if (state.labels.length) query.set("labels", state.labels.join(","));
  if (state.types.length) query.set("types", state.types.join(","));
  results.classList.add("loading");
  try {
    page = await getJSON(`${API}/samples?${query}`, { signal: loadController.signal });
    if (page.total && state.offset >= page.total) {
      state.offset = Math.floor((page.total - 1) / state.limit) * state.limit;
      return reload(false);
    }
    results.classList.remove("loading");
    renderResults();
  } catch (error) {
    if (error.name === "AbortError") return;
    results.classList.remove("loading");
    showError(results, error);
  }
}

// -- zoom view ----------------------------------------------------------------------------------------------------

function boxesOverlay(sample, labelIndex) {
  const boxes = sample.boxes.filter((b) => b.label_index === labelIndex);
  if (!boxes.length) return null;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${sample.width} ${sample.height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "boxes");
  for (const box of boxes) {
    const rect = document.createElementNS(ns, "rect");
    for (const [key, value] of Object.entries({ x: box.x, y: box.y, width: box.width, height: box.height })) rect.setAttribute(key, String(value));
    rect.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(rect);
  }
  return svg;
}

// Each open (and each close) takes a new number; an answer that arrives after a newer open or a close is dropped,
// so a slow request cannot reopen a view the user has just closed.
let zoomRequest = 0;

async function openZoom(sampleId, labelIndex) {
  const request = ++zoomRequest;
  let sample;
  try {
    sample = await getJSON(`${API}/samples/${sampleId}`);
  } catch (error) {
    if (request !== zoomRequest) return;
    fill(zoom, el("div", { class: "zoom-body" }, el("button", { type: "button", class: "button close", onclick: () => zoom.close() }, "Close")));
    showError(zoom.firstChild, error);
    if (!zoom.open) zoom.showModal();
    return;
  }
  if (request !== zoomRequest) return;
  const explained = sample.labels.filter((l) => l.type);
  const labels = explained.length ? explained : sample.labels;
  let label = labels.find((l) => l.index === labelIndex) || labels[0];
  state.zoom = String(sampleId);
  state.zl = label ? String(label.index) : null;
  saveState();
  const position = page.samples.findIndex((s) => s.id === sampleId);
  const step = (delta) => {
    const next = page.samples[position + delta];
    if (next) openZoom(next.id, labelOf(next) && labelOf(next).index);
  };
  const render = () => {
    const names = detail.explainers.map((e) => e.name);
    const original = el("figure", { class: "zoom-figure" },
      el("div", { class: "zoom-frame" }, el("img", { class: "zoom-image", src: withParams(sample.image_url, `size=${ZOOM_SIZE}`), alt: sample.name }),
        label ? boxesOverlay(sample, label.index) : null),
      el("figcaption", {}, "input", sample.boxes.some((b) => label && b.label_index === label.index) ? " · boxes of this label" : ""));
    const maps = names.map((name) => el("figure", { class: "zoom-figure" },
      el("div", { class: "zoom-frame" }, mapFigure(sample, label, name, ZOOM_SIZE)), el("figcaption", {}, name)));
    fill(zoom, el("div", { class: "zoom-body" },
      el("div", { class: "zoom-head" },
        el("h2", {}, sample.name), el("span", { class: "muted" }, `#${sample.id}`), el("span", { class: "spacer" }),
        el("button", { type: "button", class: "button", disabled: position <= 0, onclick: () => step(-1), title: "previous sample (←)" }, "‹"),
        el("button", { type: "button", class: "button", disabled: position < 0 || position >= page.samples.length - 1, onclick: () => step(1), title: "next sample (→)" }, "›"),
        el("button", { type: "button", class: "button close", onclick: () => zoom.close(), title: "close (Esc)" }, "Close")),
      el("div", { class: "label-list horizontal" }, labels.map((l) => labelButton(sample, l, label && l.index === label.index, (index) => {
        label = labels.find((x) => x.index === index);
        state.zl = String(index);
        saveState();
        render();
      }))),
      el("div", { class: "zoom-grid" }, original, maps)));
  };
  render();
  zoom.onkeydown = (event) => {
    if (event.key === "ArrowRight") { event.preventDefault(); step(1); }
    if (event.key === "ArrowLeft") { event.preventDefault(); step(-1); }
  };
  if (!zoom.open) zoom.showModal();
}

zoom.addEventListener("close", () => {
  zoomRequest += 1;
  state.zoom = null;
  state.zl = null;
  saveState();
});
zoom.addEventListener("click", (event) => { if (event.target === zoom) zoom.close(); });
document.addEventListener("click", (event) => {
  const dropdown = document.getElementById("label-filter");
  if (dropdown && dropdown.open && !dropdown.contains(event.target)) dropdown.open = false;
});

// -- keyboard -----------------------------------------------------------------------------------------------------

function focusRow(index, scroll = true) {
  const rows = results.querySelectorAll("tr.sample-row");
  if (!rows.length) return;
  focusedRow = Math.max(0, Math.min(rows.length - 1, index));
  rows[focusedRow].focus({ preventScroll: !scroll });
}

document.addEventListener("keydown", (event) => {
  if (zoom.open || event.altKey || event.ctrlKey || event.metaKey) return;
  const tag = (event.target.tagName || "").toLowerCase();
  if (["input", "select", "textarea"].includes(tag) || event.target.isContentEditable) return;
  const sample = page.samples[focusedRow];
  if (event.key === "ArrowDown" || event.key === "j") { event.preventDefault(); focusRow(focusedRow + 1); }
  else if (event.key === "ArrowUp" || event.key === "k") { event.preventDefault(); focusRow(focusedRow - 1); }
  else if (event.key === "ArrowRight" && state.offset + state.limit < page.total) { state.offset += state.limit; focusedRow = 0; reload(true); }
  else if (event.key === "ArrowLeft" && state.offset > 0) { state.offset = Math.max(0, state.offset - state.limit); focusedRow = 0; reload(true); }
  else if ((event.key === "Enter" || event.key === "z") && sample && tag === "tr") { event.preventDefault(); openZoom(sample.id, labelOf(sample) && labelOf(sample).index); }
  else if (event.key === "o") { const box = document.getElementById("overlay"); box.checked = !box.checked; box.dispatchEvent(new Event("change")); }
  else if (/^[1-9]$/.test(event.key) && sample) {
    const label = sample.labels[parseInt(event.key, 10) - 1];
    if (label) { activeLabel.set(sample.id, label.index); renderResults(); focusRow(focusedRow, false); }
  }
});

// -- live updates -------------------------------------------------------------------------------------------------

async function poll() {
  if (document.hidden || !detail || detail.status !== "running") return;
  try {
    const fresh = await getJSON(API);
    const grew = fresh.num_samples !== detail.num_samples;
    const labels = new Map(fresh.labels.map((l) => [l.index, l]));
    detail = fresh;
    fill(head, summaryHeader(detail, "browser"));
    for (const option of controls.querySelectorAll(".menu-option")) {
      const label = labels.get(parseInt(option.querySelector("input").value, 10));
      if (label) fill(option.querySelector(".option-counts"), TYPES.map((t) => el("span", { class: `count count-${t}` }, `${t} ${label.counts[t]}`)));
    }
    if (grew && !zoom.open) reload(false);
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
  state = readState();
  fill(head, summaryHeader(detail, "browser"));
  renderControls();
  await reload(false);
  if (state.zoom) openZoom(parseInt(state.zoom, 10), state.zl === null ? undefined : parseInt(state.zl, 10));
  setInterval(poll, POLL_MS);
}

window.addEventListener("popstate", () => {
  if (!detail) return;
  state = readState();
  renderControls();
  reload(false);
  if (!state.zoom && zoom.open) zoom.close();
});

start();
