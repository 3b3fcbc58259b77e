// The zoom view's "Inside" panel of one sample: what the network computed inside it, as the runner stored it
// (register_internals). A layer picker over the stored layers; a features layer shows one tile per kept channel
// with its activation scale and the layer's filters; an attention layer shows one map per head, sortable by how
// focused the head is and how much of it falls in the boxes, with one head large. Below: the attention rollout
// maps and the prediction with and without the attention intervention. Every number comes from the API.
import { boxesOverlay } from "./cells.js";
import { el, fill, getJSON, percent, probText, requestSize, showError, sized } from "./util.js";

const FEATURE_PX = 76;
const FILTER_PX = 44;
const HEAD_PX = 104;
const LARGE_PX = 288;
const ROLLOUT_PX = 200;
const ENTROPY_HELP = "entropy of the head's attention over the patches: 0 when it looks at one patch, 1 when it "
  + "looks at every patch alike";
const BOX_HELP = "share of the head's attention that falls inside the sample's boxes";
// how each sort orders the heads; a head without the number goes last
const SORTS = {
  head: { text: "head index", key: (h) => h.head, descending: false },
  entropy: { text: "entropy (focused first)", key: (h) => h.entropy, descending: false },
  box: { text: "box share (highest first)", key: (h) => h.box_share, descending: true },
};

/** A number with `digits` significant digits at most and a true minus sign: 0.0383, −0.486, 12.3, 1.2e−5. */
export function sig(value, digits = 3) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  if (value === 0) return "0";
  const abs = Math.abs(value);
  const text = abs < 1e-3 || abs >= 1e5 ? value.toExponential(1) : String(Number(value.toPrecision(digits)));
  return text.replace(/-/g, "−");
}

function sortedHeads(heads, sort) {
  const { key, descending } = SORTS[sort] || SORTS.head;
  return [...heads].sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === null || x === undefined) return y === null || y === undefined ? a.head - b.head : 1;
    if (y === null || y === undefined) return -1;
    return (descending ? y - x : x - y) || a.head - b.head;
  });
}

function facts(...parts) {
  return el("span", { class: "muted small" }, parts.filter(Boolean).join(" · "));
}

// -- features layer -----------------------------------------------------------------------------------------------

function tileSize(width, height, px) {
  return { width: String(px), height: String(Math.max(1, Math.round((px * height) / Math.max(1, width)))) };
}

function featureTile(layer, map) {
  const range = `${sig(map.low, 2)} … ${sig(map.high, 2)}`;
  return el("figure", { class: "inside-tile inside-feature", dataset: { channel: String(map.channel) },
    title: `channel ${map.channel}: from ${sig(map.low, 4)} (dark) to ${sig(map.high, 4)} (yellow), mean ${sig(map.mean, 4)}` },
  el("img", { src: map.url, alt: `channel ${map.channel} of ${layer.name}`, ...tileSize(layer.width, layer.height, FEATURE_PX) }),
  el("figcaption", {}, el("strong", {}, `ch ${map.channel}`), el("span", {}, range), el("span", {}, `mean ${sig(map.mean, 2)}`)));
}

// a layer with more filters than this shows those of its kept channels first, the rest on request
const FILTERS_SHOWN = 64;

function filterTile(layer, url, index, kept) {
  const [kh, kw] = layer.filters.size;
  return el("figure", {
    class: kept ? "inside-tile inside-filter kept" : "inside-tile inside-filter", dataset: { index: String(index) },
    title: `filter ${index} (${kh}×${kw})${kept ? ": its channel's map is shown above" : ""}` },
  el("img", { src: url, alt: `filter ${index} of ${layer.name}`, ...tileSize(kw, kh, FILTER_PX) }),
  el("figcaption", {}, String(index)));
}

function filtersBlock(layer) {
  const filters = layer.filters;
  if (!filters) return null;
  const [kh, kw] = filters.size;
  const how = filters.mode === "rgb"
    ? `as RGB: each input colour's weights, on one scale for the layer (${sig(filters.low)} … ${sig(filters.high)})`
    : `the mean over the input channels: blue negative, white 0, red positive (${sig(filters.low)} … ${sig(filters.high)})`;
  const kept = new Set(layer.maps.map((map) => map.channel));
  const grid = el("div", { class: "inside-grid inside-filters" });
  const all = () => filters.urls.map((url, index) => filterTile(layer, url, index, kept.has(index)));
  let more = null;
  if (filters.count > FILTERS_SHOWN && layer.maps.every((map) => map.channel < filters.count)) {
    // one filter per output channel: the kept channels' filters, in the maps' order
    fill(grid, layer.maps.map((map) => filterTile(layer, filters.urls[map.channel], map.channel, true)));
    more = el("button", { type: "button", class: "inside-more", onclick: () => { fill(grid, all()); more.remove(); } },
      `show all ${filters.count} filters`);
  } else {
    fill(grid, all());
  }
  return el("div", { class: "inside-block", dataset: { block: "filters" } },
    el("div", { class: "inside-block-head" }, el("h4", {}, "Filters"),
      facts(`${filters.count} kernels of ${kh}×${kw}`, how, more ? `those of the ${kept.size} channels above` : null)),
    grid, more);
}

function featuresView(layer) {
  const partial = layer.kept < layer.channels;
  return el("div", { class: "inside-layer", dataset: { layer: layer.name, kind: "features" } },
    el("div", { class: "inside-block", dataset: { block: "maps" } },
      el("div", { class: "inside-block-head" }, el("h4", {}, "Feature maps"),
        facts(`${layer.channels} channels of ${layer.height}×${layer.width}`, `stored as ${layer.encoding}`,
          "each map coloured from its own minimum (dark) to its maximum (yellow)")),
      partial ? el("p", { class: "inside-note small" },
        `top ${layer.kept} of ${layer.channels} channels, by mean activation on this sample`) : null,
      el("div", { class: "inside-grid inside-features" }, layer.maps.map((map) => featureTile(layer, map)))),
    filtersBlock(layer));
}

// -- attention layer ----------------------------------------------------------------------------------------------

/** An image with the sample's boxes (every label's: the box share counts them all) drawn over it. */
function boxed(img, data) {
  return el("div", { class: "inside-frame" }, img, boxesOverlay(data.boxes || [], data.width, data.height, "meet"));
}

function headNumbers(head, hasBoxes) {
  return [el("span", { title: ENTROPY_HELP }, `entropy ${sig(head.entropy)}`),
    hasBoxes ? el("span", { title: BOX_HELP }, `box ${percent(head.box_share, 0)}`) : null];
}

function attentionView(layer, data, view) {
  const size = (px) => requestSize(px, null);
  const large = el("figure", { class: "inside-head-large" });
  const grid = el("div", { class: "inside-grid inside-heads", role: "listbox", "aria-label": `heads of ${layer.name}` });
  // the head picked, else the first in the current order
  const current = () => layer.head_list.find((h) => h.head === view.head) || sortedHeads(layer.head_list, view.sort)[0];

  const showLarge = () => {
    const head = current();
    if (!head) { fill(large); return; }
    large.dataset.head = String(head.head);
    fill(large, boxed(el("img", { src: sized(head.url, size(LARGE_PX)), alt: `head ${head.head} of ${layer.name}` }), data),
      el("figcaption", {}, el("strong", {}, `head ${head.head}`), ...headNumbers(head, data.has_boxes)));
  };
  const showGrid = () => {
    const selected = current();
    fill(grid, sortedHeads(layer.head_list, view.sort).map((head) => el("button", {
      type: "button", class: "inside-tile inside-head", role: "option", "aria-selected": String(head === selected),
      dataset: { head: String(head.head) }, title: `show head ${head.head} large`,
      onclick: () => { view.head = head.head; showLarge(); showGrid(); } },
    el("img", { src: sized(head.url, size(HEAD_PX)), alt: `head ${head.head}` }),
    el("span", { class: "inside-caption" }, el("strong", {}, `head ${head.head}`), ...headNumbers(head, data.has_boxes)))));
  };
  if (view.sort === "box" && !data.has_boxes) view.sort = "head";
  const sort = el("select", { class: "inside-sort", "aria-label": "sort the heads", onchange: (event) => {
    view.sort = event.target.value;
    showLarge();
    showGrid();
  } }, Object.entries(SORTS).filter(([key]) => key !== "box" || data.has_boxes).map(([key, option]) =>
    el("option", { value: key, selected: key === view.sort }, option.text)));
  showLarge();
  showGrid();
  const extra = layer.tokens - layer.rows * layer.columns;
  return el("div", { class: "inside-layer", dataset: { layer: layer.name, kind: "attention" } },
    el("div", { class: "inside-block-head" }, el("h4", {}, "Attention heads"),
      facts(`${layer.heads} heads over ${layer.rows}×${layer.columns} patches`,
        extra > 0 ? `${layer.tokens} tokens (${extra} not a patch)` : `${layer.tokens} tokens`,
        extra > 0 ? "the class token's attention to each patch" : "the mean attention each patch receives"),
      el("span", { class: "spacer" }),
      el("label", { class: "inline-label small" }, el("span", { class: "muted" }, "sort"), sort)),
    el("p", { class: "muted small inside-note" }, `Entropy: 0 when a head looks at one patch, 1 when it looks at every patch alike`,
      data.has_boxes ? "; box: the share of its attention inside the sample's boxes (drawn on the large head)" : "",
      ". Click a head to show it large."),
    el("div", { class: "inside-attention" }, large, grid));
}

// -- rollout and intervention -------------------------------------------------------------------------------------

function rolloutBlock(rollout, data) {
  if (!rollout.length) return null;
  const query = "overlay=1&alpha=0.6&cmap=inferno&sign=positive";
  return el("div", { class: "inside-block inside-rollouts", dataset: { block: "rollout" } },
    el("div", { class: "inside-block-head" }, el("h4", {}, "Attention rollout"),
      facts("how much each patch flows into the prediction through every layer's attention (the same for every label)")),
    el("div", { class: "inside-grid" }, rollout.map((entry) => el("figure", { class: "inside-rollout", dataset: { explainer: entry.explainer } },
      boxed(el("img", { src: sized(entry.url, requestSize(ROLLOUT_PX, null), query), alt: `${entry.explainer} over the image` }), data),
      el("figcaption", {}, entry.explainer)))));
}

function delta(before, after) {
  if (before === null || after === null) return "–";
  const change = after - before;
  return `${change > 0 ? "+" : change < 0 ? "−" : "±"}${probText(Math.abs(change))}`;
}

function interventionBlock(intervention) {
  if (!intervention) return null;
  const best = (key) => intervention.labels.reduce((top, row) => (row[key] !== null && (top === null || row[key] > top[key]) ? row : top), null);
  const [topBefore, topAfter] = [best("before"), best("after")];
  const where = intervention.layers && intervention.layers.length ? `in ${intervention.layers.join(", ")}` : "in every attention layer";
  const verdict = intervention.changed
    ? el("p", { class: "inside-verdict changed" }, "The top label changes: ", el("strong", {}, intervention.top_before), " → ",
      el("strong", {}, intervention.top_after))
    : el("p", { class: "inside-verdict" }, "The top label stays ", el("strong", {}, intervention.top_after));
  const cell = (row, key, top) => el("td", { class: row === top ? "num top" : "num", title: row === top ? `top label ${key} the intervention` : null },
    probText(row[key]));
  return el("div", { class: "inside-block inside-intervention-block", dataset: { block: "intervention", changed: String(intervention.changed) } },
    el("div", { class: "inside-block-head" }, el("h4", {}, "Attention intervention"),
      facts(`pre-softmax attention scores × ${sig(intervention.scale)} ${where}`)),
    verdict,
    el("table", { class: "table inside-intervention" },
      el("thead", {}, el("tr", {}, el("th", {}, "label"), el("th", { class: "num" }, "before"), el("th", { class: "num" }, "after"),
        el("th", { class: "num" }, "change"))),
      el("tbody", {}, intervention.labels.map((row) => el("tr", {
        class: [row === topBefore ? "top-before" : "", row === topAfter ? "top-after" : ""].filter(Boolean).join(" ") || null,
        dataset: { label: String(row.index) } },
      el("td", {}, row.name === null ? `label ${row.index}` : row.name), cell(row, "before", topBefore), cell(row, "after", topAfter),
      el("td", { class: "num muted" }, delta(row.before, row.after)))))));
}

// -- the panel ----------------------------------------------------------------------------------------------------

function panel(data, start, onChange) {
  const names = data.layers.map((l) => l.name);
  const view = {
    layer: names.includes(start.layer) ? start.layer : names.length ? names[0] : null,
    sort: start.sort in SORTS ? start.sort : "head",
    head: Number.isInteger(start.head) ? start.head : null, // null: the first head in the sort order
  };
  // every change of layer, sort or head reaches the page's URL, so a pasted link opens the same view
  const changed = new Proxy(view, { set: (target, key, value) => { target[key] = value; onChange({ ...target }); return true; } });
  const body = el("div", { class: "inside-body" });
  const tabs = el("div", { class: "inside-tabs", role: "tablist", "aria-label": "layers" });
  const show = () => {
    const layer = data.layers.find((l) => l.name === view.layer);
    for (const tab of tabs.children) tab.setAttribute("aria-selected", String(tab.dataset.layer === view.layer));
    fill(body, layer ? (layer.kind === "attention" ? attentionView(layer, data, changed) : featuresView(layer)) : null);
  };
  fill(tabs, data.layers.map((layer) => el("button", { type: "button", role: "tab", class: "inside-tab", dataset: { layer: layer.name },
    onclick: () => { changed.layer = layer.name; show(); } },
  el("span", {}, layer.name), el("span", { class: `inside-kind kind-${layer.kind}` }, layer.kind === "attention" ? `${layer.heads} heads` : `${layer.kept} maps`))));
  show();
  const extras = [rolloutBlock(data.rollout || [], data), interventionBlock(data.intervention)].filter(Boolean);
  return el("section", { class: "diag-panel inside-panel", dataset: { panel: "inside" } },
    el("div", { class: "diag-head" }, el("h3", {}, "Inside the network"),
      el("span", { class: "muted small" }, "what the stored layers computed for this sample (the same for every label)")),
    data.layers.length ? [tabs, body] : null,
    extras.length ? el("div", { class: "inside-extras" }, extras) : null);
}

/** Whether the container is still current: not replaced by another sample, nor in a closed view. */
function live(container) {
  const dialog = container.closest("dialog");
  return container.isConnected && (!dialog || dialog.open);
}

/** Fill `container` with the Inside panel of one sample (after the next paint, so the maps are fetched first). It
 * stays hidden while loading and when the summary stored nothing inside; `data-state` goes from "loading" to
 * "drawn", "empty" or "failed" (the error shown inside the container). The layer, head sort and head shown start
 * from `ctx.insideView()` ({layer, sort, head}, each optional) and every change goes to `ctx.onInsideView(view)`. */
export async function loadInside(container, ctx, sampleId) {
  Object.assign(container.dataset, { sample: String(sampleId), state: "loading" });
  container.hidden = true;
  fill(container);
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  let data;
  try {
    data = await getJSON(`${ctx.api}/inside/${sampleId}`);
  } catch (error) {
    if (!live(container)) return;
    container.hidden = false;
    showError(container, new Error(`what the network computed inside could not be loaded: ${error.message}`));
    container.dataset.state = "failed";
    return;
  }
  if (!live(container)) return;
  if (!data.stored || (!data.layers.length && !data.intervention)) {
    container.dataset.state = "empty";
    return;
  }
  container.hidden = false;
  const start = ctx.insideView ? ctx.insideView() : {};
  fill(container, panel(data, start, (view) => { if (ctx.onInsideView) ctx.onInsideView(view); }));
  container.dataset.state = "drawn";
}
