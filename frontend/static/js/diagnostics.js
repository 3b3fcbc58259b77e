// The zoom view's diagnostics of one sample and label, below its maps: Integrated Gradients' path from each baseline
// to the input (the images along it, the target's probability and the mean |gradient| at each point, whether the
// integral converged) and each faithfulness metric's perturbation curves, with the area their score measures.
import { el, fill, fmt, getJSON, loadPlotly, percent, score, showError, swatch } from "./util.js";

const GREY = "#868e96";
const FONT = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif";
const CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
const BASELINES = { zero: "zeros (the mean image)", black: "black image", white: "white image", blur: "blurred input",
  uniform: "uniform noise", tensor: "a given tensor" };
const SATURATION = "Mean |∂F/∂input| at each point of the path. Gradients are often large near the baseline and vanish "
  + "once the prediction saturates, close to the input: a plain gradient, taken at the input alone, then misses "
  + "features that Integrated Gradients, summing along the whole path, still credits.";

/** Plotly renders a few HTML tags in its text: names from models and datasets must show as typed. */
function text(value) {
  return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function translucent(color, opacity) {
  const hex = /^#([0-9a-f]{6})$/i.exec(color || "");
  if (!hex) return `rgba(134, 142, 150, ${opacity})`;
  const n = parseInt(hex[1], 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${opacity})`;
}

/** A share such as a relative delta: "0.3%", "<0.1%", "–" when unknown. */
function share(value) {
  if (value === null || value === undefined) return "–";
  return value > 0 && value < 0.001 ? "<0.1%" : percent(value);
}

function axis(title, extra = {}) {
  return { title: { text: text(title), standoff: 8 }, gridcolor: "#eef0f3", linecolor: "#cfd4dc", zeroline: false,
    automargin: true, ...extra };
}

/** A chart's layout; it grows by a line per legend entry, so the plot keeps its height with many explainers. */
function layout(title, xaxis, yaxis, entries) {
  return {
    title: { text: text(title), x: 0.01, xanchor: "left", font: { size: 14 } },
    font: { family: FONT, size: 12, color: "#1f2937" }, paper_bgcolor: "#fff", plot_bgcolor: "#fff",
    height: 300 + 19 * entries, margin: { l: 60, r: 16, t: 40, b: 40 }, xaxis, yaxis, hovermode: "closest",
    // below the axis title, left-aligned: the charts sit two abreast, too narrow for a legend at the side
    legend: { orientation: "h", x: 0, xanchor: "left", y: -0.2, yanchor: "top", font: { size: 11.5 } },
    hoverlabel: { font: { family: FONT } },
  };
}

/** Whether the positive values span more than `decades` powers of ten (then a log axis reads better). */
function spans(values, decades) {
  const positive = values.filter((v) => v !== null && v > 0);
  return positive.length > 1 && Math.max(...positive) / Math.min(...positive) > 10 ** decades;
}

function chartNode(id) {
  return el("div", { class: "diag-chart chart-loading", dataset: { chart: id } });
}

// -- Integrated Gradients -----------------------------------------------------------------------------------------

function baselineText(baseline) {
  return typeof baseline === "number" ? `constant ${fmt(baseline)}` : BASELINES[baseline] || String(baseline);
}

function pathStrip(entry) {
  if (!entry.images.length) return el("p", { class: "muted small ig-no-images" }, "This baseline is a tensor: its path cannot be drawn.");
  return el("div", { class: "ig-strip" }, entry.images.map((image) => el("figure", { class: "ig-step" },
    el("img", { src: image.url, width: "128", height: "128", alt: `${entry.explainer} at α = ${image.alpha}` }),
    el("div", { class: "ig-caption" }, `α = ${image.alpha}`,
      image.alpha === 0 ? el("span", { class: "muted" }, "baseline") : image.alpha === 1 ? el("span", { class: "muted" }, "input") : null))));
}

function verdict(entry) {
  const state = entry.converged === true ? "ok" : entry.converged === false ? "warn" : "unknown";
  const facts = [
    ["F(x) − F(baseline)", fmt(entry.output_gap), "the model's output for the label at the input minus at the baseline"],
    ["relative delta", share(entry.relative_delta), "|sum of attributions − (F(x) − F(baseline))| relative to the gap"],
    ["tolerance", share(entry.tolerance), null],
    ["steps", `${entry.steps}${entry.method ? ` · ${entry.method}` : ""}`, null],
    entry.searched ? ["steps needed", entry.steps_needed === null ? "none tried" : String(entry.steps_needed),
      "the fewest of 4, 8, 16, … steps within the tolerance"] : null,
  ].filter(Boolean);
  return el("div", { class: `ig-verdict verdict-${state}`, dataset: { converged: String(entry.converged) } },
    el("p", {}, entry.verdict),
    el("dl", { class: "ig-facts" }, facts.map(([key, value, title]) => el("div", { title },
      el("dt", {}, key), el("dd", {}, value)))));
}

function pathRow(entry) {
  return el("div", { class: "ig-row", dataset: { explainer: entry.explainer } },
    el("div", { class: "ig-row-head" }, swatch(entry.color), el("strong", {}, entry.explainer),
      el("span", { class: "muted small" }, `baseline: ${baselineText(entry.baseline)}`)),
    el("div", { class: "ig-row-body" }, pathStrip(entry), verdict(entry)));
}

function pathTraces(entries, key) {
  return entries.map((entry) => ({
    type: "scatter", mode: "lines+markers", name: text(entry.explainer), x: entry.alphas, y: entry[key],
    line: { color: entry.color || GREY, width: 2 }, marker: { size: 5 },
    hovertemplate: `%{fullData.name}<br>α = %{x:.3f}<br>${key === "probabilities" ? "p" : "mean |gradient|"} = %{y:.4g}<extra></extra>`,
  }));
}

function pathPanel(entries, label, charts) {
  const probability = chartNode("ig-probability");
  const gradient = chartNode("ig-gradient");
  const alpha = () => axis("α (0: baseline, 1: input)", { range: [0, 1] }); // one per chart: plotly writes into it
  charts.push([probability, pathTraces(entries, "probabilities"),
    layout("Target probability along the path", alpha(), axis(`probability of ${label}`, { rangemode: "tozero" }), entries.length)]);
  const log = spans(entries.flatMap((e) => e.gradients), 2);
  charts.push([gradient, pathTraces(entries, "gradients"),
    layout("Mean |gradient| along the path", alpha(), axis(`mean |gradient|${log ? " (log)" : ""}`, log
      ? { type: "log", dtick: 1, exponentformat: "power" } : { rangemode: "tozero", exponentformat: "power" }), entries.length)]);
  return el("section", { class: "diag-panel", dataset: { panel: "integrated-gradients" } },
    el("div", { class: "diag-head" }, el("h3", {}, "Integrated Gradients"),
      el("span", { class: "muted small" }, `the straight path from each baseline (α = 0) to the input (α = 1), for the label ${label}`)),
    el("div", { class: "ig-rows" }, entries.map(pathRow)),
    el("div", { class: "diag-charts" },
      el("figure", { class: "diag-figure" }, probability,
        el("p", { class: "muted small diag-caption" }, "The model's probability of the label at each point Integrated Gradients evaluated.")),
      el("figure", { class: "diag-figure" }, gradient, el("p", { class: "muted small diag-caption" }, SATURATION))));
}

// -- faithfulness curves ------------------------------------------------------------------------------------------

function curveTraces(metric) {
  const measure = metric.area ? "AUC" : "score";
  const opacity = Math.min(0.1, 0.2 / metric.curves.length); // stacked areas stay readable with many explainers
  return metric.curves.map((curve) => {
    const tag = `${curve.reference ? "reference, " : ""}${measure} ${score(curve.score)}`;
    const trace = {
      type: "scatter", mode: "lines", name: text(`${curve.explainer} (${tag})`), x: metric.x, y: curve.values,
      meta: { explainer: curve.explainer, reference: curve.reference }, connectgaps: false,
      line: curve.reference ? { color: GREY, width: 1.5, dash: "dash" } : { color: curve.color || GREY, width: 2 },
      hovertemplate: `${text(curve.explainer)}<br>x = %{x:.3g}<br>p = %{y:.4g}<extra></extra>`,
    };
    if (metric.area && !curve.reference) Object.assign(trace, { fill: "tozeroy", fillcolor: translucent(curve.color, opacity) });
    return trace;
  });
}

function curvesPanel(metrics, label, charts) {
  const figures = metrics.map((metric) => {
    const node = chartNode(`curves-${metric.metric}`);
    node.dataset.metric = metric.metric;
    const direction = metric.higher_is_better ? "higher is better ↑" : "lower is better ↓";
    const x = metric.area ? { range: [0, 1] } : metric.x.length <= 20 ? { dtick: 1 } : {}; // bands are counted
    charts.push([node, curveTraces(metric), layout(`${metric.metric} · ${direction}`, axis(metric.x_title, x),
      axis(`probability of ${label}`, { rangemode: "tozero" }), metric.curves.length)]);
    return el("figure", { class: "diag-figure" }, node);
  });
  return el("section", { class: "diag-panel", dataset: { panel: "curves" } },
    el("div", { class: "diag-head" }, el("h3", {}, "Faithfulness curves"),
      el("span", { class: "muted small" }, `the probability of ${label} as the pixels each map ranks highest are inserted, deleted or `,
        "replaced", metrics.some((metric) => metric.area) ? "; the shaded area under a curve is its AUC" : "",
        ". Click a legend entry to hide its curve, double-click to show it alone.")),
    el("div", { class: "diag-charts" }, figures));
}

// -- loading ------------------------------------------------------------------------------------------------------

/** Whether the container is still on screen: not replaced by another label or sample, nor in a closed view. */
function shown(container) {
  return container.isConnected && container.getClientRects().length > 0;
}

async function drawCharts(container, charts) {
  let Plotly;
  try {
    Plotly = await loadPlotly();
  } catch (error) {
    for (const [node] of charts) { node.classList.remove("chart-loading"); showError(node, error); }
    container.dataset.state = "failed";
    return;
  }
  for (const [node, traces, chartLayout] of charts) {
    if (!shown(container)) return;
    node.classList.remove("chart-loading");
    await Plotly.react(node, traces, chartLayout, CONFIG);
  }
  container.dataset.state = "drawn";
}

/** Fill `container` with the panels of one sample and label (after the next paint, so the maps are fetched first);
 * only the explainers selected in `ctx.explainers()` are shown, with the reference curves. The container's
 * `data-state` goes from "loading" to "drawn", "empty" or "failed"; the promise resolves then. */
export async function loadDiagnostics(container, ctx, sampleId, labelIndex) {
  Object.assign(container.dataset, { sample: String(sampleId), label: String(labelIndex), state: "loading" });
  fill(container, el("p", { class: "muted small diag-note" }, "Loading path and curve diagnostics…"));
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  let data;
  try {
    data = await getJSON(`${ctx.api}/diagnostics/${sampleId}/${labelIndex}`);
  } catch (error) {
    if (!shown(container)) return;
    showError(container, new Error(`diagnostics could not be loaded: ${error.message}`));
    container.dataset.state = "failed";
    return;
  }
  if (!shown(container)) return;
  const selected = new Set(ctx.explainers());
  const paths = data.integrated_gradients.filter((entry) => selected.has(entry.explainer));
  const metrics = data.curves.map((metric) => ({ ...metric,
    curves: metric.curves.filter((curve) => curve.reference || selected.has(curve.explainer)) }))
    .filter((metric) => metric.curves.some((curve) => !curve.reference));
  if (!paths.length && !metrics.length) {
    const none = !data.stored ? "This summary was written before path and curve diagnostics were stored."
      : data.integrated_gradients.length || data.curves.length ? "No path or curve diagnostics of the selected explainers for this pair."
        : "No path or curve diagnostics stored for this pair.";
    fill(container, el("p", { class: "muted small diag-note" }, none));
    container.dataset.state = "empty";
    return;
  }
  const label = data.label || `label ${labelIndex}`;
  const charts = [];
  fill(container, paths.length ? pathPanel(paths, label, charts) : null, metrics.length ? curvesPanel(metrics, label, charts) : null);
  await drawCharts(container, charts);
}
