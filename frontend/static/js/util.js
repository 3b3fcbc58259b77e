// What every page shares: safe DOM building, API calls, formatting and URL state.
// Text from datasets and models (class names, sample names) only ever goes into textContent, never innerHTML.

export const TYPES = ["TP", "FN", "FP", "TN"];
export const TYPE_HELP = {
  TP: "true positive: ground truth and predicted",
  FN: "false negative: ground truth, not predicted",
  FP: "false positive: predicted, not ground truth",
  TN: "true negative: explained (top-k) but neither",
};

/** The dashboard's root path, "/" or the prefix a reverse proxy forwards (e.g. "/xai/"), as the page's head
 * names it: every address the JS builds starts here. */
export const ROOT = document.querySelector('meta[name="xaiboard-root"]')?.content || "/";

/** An address of this dashboard: url("api/v1/summaries") is "/api/v1/summaries", or "/xai/api/v1/summaries". */
export function url(path) {
  return ROOT + String(path).replace(/^\/+/, "");
}

/** Create an element: el("a", {href: "/", class: "x", onclick: fn}, "text", child, ...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of a node. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GET a JSON API URL; throws ApiError with the server's message on a non-2xx answer. */
export async function getJSON(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" }, ...options });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "the server cannot be reached");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) throw new ApiError(response.status, (body && body.error) || `HTTP ${response.status}`);
  return body;
}

export function fmt(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e6) return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e5)) return value.toExponential(2);
  return value.toFixed(digits);
}

/** A score with three decimals (tiny magnitudes in exponent form), "–" when undefined. */
export function score(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const abs = Math.abs(value);
  return abs !== 0 && (abs < 1e-3 || abs >= 1e5) ? value.toExponential(2) : value.toFixed(3);
}

export function plural(n, word, many = word + "s") {
  return `${n.toLocaleString()} ${n === 1 ? word : many}`;
}

export function relativeTime(iso) {
  if (!iso) return "–";
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  if (!Number.isFinite(seconds)) return iso;
  if (seconds < 45) return "just now";
  const units = [["minute", 60], ["hour", 3600], ["day", 86400], ["month", 2592000], ["year", 31536000]];
  let [unit, size] = units[0];
  for (const [name, length] of units) if (seconds >= length) [unit, size] = [name, length];
  const n = Math.round(seconds / size);
  return `${n} ${unit}${n === 1 ? "" : "s"} ago`;
}

export function localTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** The page's query as a plain object of strings. */
export function readQuery() {
  return Object.fromEntries(new URLSearchParams(window.location.search).entries());
}

/** Put a state object into the URL, leaving out values equal to their defaults. */
export function writeQuery(state, defaults = {}, push = false) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(state)) {
    if (value === undefined || value === null) continue;
    const text = Array.isArray(value) ? value.join(",") : String(value);
    const fallback = defaults[key];
    const defaultText = Array.isArray(fallback) ? fallback.join(",") : fallback === undefined ? undefined : String(fallback);
    if (text === defaultText) continue;
    query.set(key, text);
  }
  const search = query.toString();
  const url = window.location.pathname + (search ? "?" + search : "");
  if (url === window.location.pathname + window.location.search) return;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

export function list(text) {
  return (text || "").split(",").map((part) => part.trim()).filter(Boolean);
}

export function typeBadge(type) {
  if (!type) return null;
  return el("span", { class: `type type-${type}`, title: TYPE_HELP[type] }, type);
}

/** The TP/FN/FP/TN legend. */
export function typeLegend() {
  return el("div", { class: "legend", "aria-label": "prediction types" },
    TYPES.map((type) => el("span", { class: "legend-item" }, typeBadge(type), el("span", {}, TYPE_HELP[type].split(":")[1]))),
    el("span", { class: "legend-item" }, el("span", { class: "gt-mark", "aria-hidden": "true" }, "★"), el("span", {}, " ground truth")));
}

export function statusBadge(row) {
  const status = row.status || "error";
  return el("span", { class: `status status-${status}` }, status);
}

export function progressBar(done, total) {
  const fraction = total ? Math.min(1, done / total) : 0;
  const bar = el("span", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": String(total || 0),
    "aria-valuenow": String(done) }, el("span", { class: "progress-fill" }));
  bar.firstChild.style.width = `${(fraction * 100).toFixed(1)}%`;
  return el("span", { class: "progress-wrap" }, bar, el("span", { class: "progress-text" }, total ? `${done} / ${total}` : String(done)));
}

export function showError(container, error) {
  fill(container, el("div", { class: "alert alert-error", role: "alert" }, el("strong", {}, "Error: "), String(error.message || error)));
}

export function debounce(fn, wait = 200) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), wait);
  };
}

// plotly.js (4.8 MB) takes seconds to compile on a slow machine, so a page never waits for it: it is fetched once
// the page has painted its own content (tables, links), and charts are drawn when it is ready.
let plotlyLoading = null;

/** plotly.js, fetched once after the next paint from the address the page's head names (`meta[name=plotly-src]`). */
export function loadPlotly() {
  if (!plotlyLoading) {
    const source = document.querySelector('meta[name="plotly-src"]');
    plotlyLoading = new Promise((resolve, reject) => {
      if (window.Plotly) { resolve(window.Plotly); return; }
      requestAnimationFrame(() => setTimeout(() => { // after the next paint
        const script = document.createElement("script");
        script.src = source ? source.content : url("vendor/plotly.min.js");
        script.onload = () => resolve(window.Plotly);
        script.onerror = () => { plotlyLoading = null; script.remove(); reject(new Error("plotly.js could not be loaded")); };
        document.head.append(script);
      }, 0));
    });
  }
  return plotlyLoading;
}

/** Draw a figure from /figures/<name> into a node with plotly.js; hands back the figure JSON (null when it could
 * not be drawn) so a page can read its `meta`. */
export async function drawFigure(node, url) {
  node.classList.add("chart-loading");
  try {
    const [figure, Plotly] = await Promise.all([getJSON(url), loadPlotly()]);
    node.classList.remove("chart-loading");
    for (const alert of node.querySelectorAll(":scope > .alert")) alert.remove();
    await Plotly.react(node, figure.data, figure.layout, { displaylogo: false, responsive: true,
      modeBarButtonsToRemove: ["select2d", "lasso2d"] });
    return figure;
  } catch (error) {
    node.classList.remove("chart-loading");
    if (window.Plotly && node._fullLayout) window.Plotly.purge(node);
    showError(node, error);
    return null;
  }
}

export function summaryHeader(detail, current) {
  const meta = [
    detail.task && ["task", detail.task],
    detail.activation && ["activation", detail.activation],
    ["threshold", detail.threshold === null || detail.threshold === undefined ? "–" : fmt(detail.threshold, 2)],
    ["top-k", detail.top_k === null || detail.top_k === undefined ? "–" : String(detail.top_k)],
    detail.model && detail.model.class && ["model", `${detail.model.class}${detail.model.num_parameters ? ` · ${detail.model.num_parameters.toLocaleString()} params` : ""}`],
    ["samples", detail.num_samples.toLocaleString()],
    detail.uncertainty && ["uncertainty", detail.uncertainty.method || "yes"],
  ].filter(Boolean);
  const status = detail.status === "running"
    ? el("span", { class: "status-line" }, statusBadge(detail), progressBar(detail.progress.done, detail.progress.total))
    : statusBadge(detail);
  const tabs = el("nav", { class: "tabs" },
    el("a", { href: url(`s/${detail.id}`), class: current === "browser" ? "tab active" : "tab" }, "Saliency maps"),
    el("a", { href: url(`s/${detail.id}/scores`), class: current === "scores" ? "tab active" : "tab" }, "Evaluation"));
  return el("div", { class: "summary-head" },
    el("div", { class: "title-row" }, el("h1", {}, detail.name), status),
    el("div", { class: "path muted" }, detail.path),
    el("dl", { class: "meta" }, meta.map(([key, value]) => el("div", {}, el("dt", {}, key), el("dd", {}, value)))),
    tabs);
}

/** A probability with the digits it needs: 0.988, 0.0042, 4.0e-4, and 0.99996 rather than 1.000. */
export function probText(p) {
  if (p === null || p === undefined || !Number.isFinite(p)) return "–";
  if (p <= 0) return "0";
  if (p >= 1) return "1";
  if (p < 1e-3) return p.toExponential(1);
  if (p < 0.01) return p.toFixed(4);
  const rest = 1 - p;
  if (rest < 1e-6) return `1 − ${rest.toExponential(1)}`;
  if (rest < 5e-4) return p.toFixed(Math.ceil(-Math.log10(rest)));
  return p.toFixed(3);
}

/** A small square in an explainer's colour (the same colour on every page). */
export function swatch(color) {
  if (!color) return null;
  const node = el("span", { class: "swatch", "aria-hidden": "true" });
  node.style.background = color;
  return node;
}

const SIZE_STEPS = [128, 256, 384, 512, 768, 1024];

/** The `size=` to request for an image shown `cssPx` wide: its device pixels rounded up to a fixed step, so the
 * same few sizes are cached; null (the stored image) when the stored image is no larger than that. */
export function requestSize(cssPx, native) {
  const want = cssPx * (window.devicePixelRatio || 1);
  const step = SIZE_STEPS.find((s) => s >= want - 0.5) || SIZE_STEPS[SIZE_STEPS.length - 1];
  return native && native <= step ? null : step;
}

/** `url` with `size=` added (nothing when size is null). */
export function sized(url, size, extra = "") {
  const params = [extra, size ? `size=${size}` : ""].filter(Boolean).join("&");
  return params ? url + (url.includes("?") ? "&" : "?") + params : url;
}

// Tiles are never enlarged on the server (a 32 px digit stays 32 px): the browser enlarges them with crisp pixels.
document.addEventListener("load", (event) => {
  const img = event.target;
  if (img instanceof HTMLImageElement && img.naturalWidth && img.naturalWidth * 1.5 < img.clientWidth * window.devicePixelRatio) {
    img.classList.add("pixelated");
  }
}, true);

/** A share in [0, 1] as a percentage with the digits it needs ("–" when undefined). */
export function percent(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return `${(value * 100).toFixed(value === 0 || value === 1 ? 0 : digits)}%`;
}

/** A mean with its standard error, to the precision the error allows (two significant digits of the error). */
export function meanText(value, sem) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (sem === null || sem === undefined || !Number.isFinite(sem) || sem === 0) return `${score(value)}${sem === 0 ? " ± 0" : ""}`;
  const abs = Math.max(Math.abs(value), sem);
  if (abs < 1e-3 || abs >= 1e5) return `${value.toExponential(2)} ± ${sem.toExponential(1)}`;
  const digits = Math.min(8, Math.max(0, 1 - Math.floor(Math.log10(sem))));
  return `${value.toFixed(digits)} ± ${sem.toFixed(digits)}`;
}
