// The saliency browser's filter and display controls. Each changes `state` in place and calls back; the browser
// keeps the state in the URL and reloads what changed.
import { TYPES, TYPE_HELP, debounce, el, swatch, url } from "./util.js";

export const CMAPS = ["inferno", "viridis", "magma", "jet", "gray", "RdBu"];
export const SIGNS = { absolute: "absolute |r|", positive: "positive", negative: "negative", all: "signed (all)" };

export function field(label, ...children) {
  return el("div", { class: "field" }, el("span", { class: "field-label" }, label), ...children);
}

/** TP/FN/FP/TN toggles; onChange() after state.types changed. */
export function typeFilter(state, onChange) {
  return el("div", { class: "toggle-group", role: "group", "aria-label": "prediction types" }, TYPES.map((type) =>
    el("label", { class: `toggle type-toggle toggle-${type}`, title: TYPE_HELP[type] },
      el("input", { type: "checkbox", name: "type", value: type, checked: state.types.includes(type), onchange: (event) => {
        state.types = event.target.checked ? TYPES.filter((t) => t === type || state.types.includes(t)) : state.types.filter((t) => t !== type);
        onChange();
      } }),
      el("span", {}, type))));
}

/** One toggle per explainer, in its colour; at least one stays selected. state.explainers is null for all. */
export function explainerFilter(detail, state, onChange) {
  const names = detail.explainers.map((e) => e.name);
  const selected = () => state.explainers || names;
  const group = el("div", { class: "toggle-group", role: "group", "aria-label": "explainers" });
  const sync = () => {
    const chosen = selected();
    for (const box of group.querySelectorAll("input")) box.disabled = chosen.length === 1 && box.checked;
  };
  for (const explainer of detail.explainers) {
    const name = explainer.name;
    group.append(el("label", { class: "toggle" },
      el("input", { type: "checkbox", name: "explainer", value: name, checked: selected().includes(name), onchange: (event) => {
        const chosen = new Set(selected());
        if (event.target.checked) chosen.add(name); else chosen.delete(name);
        const ordered = names.filter((n) => chosen.has(n));
        state.explainers = ordered.length === names.length ? null : ordered;
        sync();
        onChange();
      } }),
      swatch(explainer.color), el("span", {}, name)));
  }
  sync();
  return names.length ? group : el("span", { class: "muted" }, "no explainers");
}

function sortOptions(detail) {
  const options = [["prob", "probability"], ["name", "name"], ["id", "dataset index"]];
  if (detail.uncertainty) options.splice(1, 0, ["uncertainty", "uncertainty (sd)"]);
  if (detail.counts && detail.counts.num_ig_paths) options.push(["delta", "IG convergence delta (worst of the labels)"]);
  for (const explainer of detail.explainers) {
    for (const metric of detail.metrics) options.push([`score:${explainer.name}:${metric.name}`, `${metric.name} of ${explainer.name}`]);
  }
  return options;
}

/** The sort key and its direction; onChange() after state.sort changed. */
export function sortControl(detail, state, onChange) {
  const key = state.sort.replace(/^-/, "");
  const descending = state.sort.startsWith("-");
  const titleOf = (desc) => (desc ? "descending (click for ascending)" : "ascending (click for descending)");
  const select = el("select", { id: "sort", "aria-label": "sort by", onchange: () => {
    state.sort = (direction.dataset.desc === "1" ? "-" : "") + select.value;
    onChange();
  } }, sortOptions(detail).map(([value, text]) => el("option", { value, selected: value === key }, text)));
  const direction = el("button", { type: "button", class: "button icon", id: "sort-direction", title: titleOf(descending),
    dataset: { desc: descending ? "1" : "0" }, onclick: () => {
      const desc = direction.dataset.desc !== "1";
      direction.dataset.desc = desc ? "1" : "0";
      direction.textContent = desc ? "↓" : "↑";
      direction.title = titleOf(desc);
      state.sort = (desc ? "-" : "") + select.value;
      onChange();
    } }, descending ? "↓" : "↑");
  return el("div", { class: "inline" }, select, direction);
}

/** Only the samples whose Integrated Gradients did not converge (relative delta over the explainer's tolerance). */
export function convergenceFilter(state, onChange) {
  return el("div", { class: "toggle-group" }, el("label", { class: "toggle", title: "only samples with a label whose Integrated Gradients map does not sum to F(x) − F(baseline) within the explainer's tolerance" },
    el("input", { type: "checkbox", id: "unconverged", checked: state.unconverged === "1", onchange: (event) => {
      state.unconverged = event.target.checked ? "1" : "0";
      onChange();
    } }), el("span", {}, "not converged")));
}

/** Overlay, opacity, colormap and sign; onChange() after any of them changed (the opacity slider debounced). */
export function displayControls(state, onChange) {
  const colorbar = el("img", { class: "colorbar", alt: `${state.cmap} colour scale`, src: url(`api/v1/colormaps/${state.cmap}`) });
  const scale = el("span", { class: "scale-labels" }, el("span", {}, state.sign === "all" ? "−" : "low"), el("span", {}, state.sign === "all" ? "+" : "high"));
  const overlay = el("label", { class: "switch" },
    el("input", { type: "checkbox", id: "overlay", role: "switch", checked: state.overlay === "1", onchange: (event) => {
      state.overlay = event.target.checked ? "1" : "0";
      onChange();
    } }),
    el("span", { class: "switch-track", "aria-hidden": "true" }), el("span", {}, "Overlay"));
  const alphaValue = el("output", { class: "alpha-value" }, `${Math.round(parseFloat(state.alpha) * 100)}%`);
  const applyAlpha = debounce(onChange, 150);
  const alpha = el("input", { type: "range", id: "alpha", min: "0", max: "1", step: "0.05", value: state.alpha, "aria-label": "overlay opacity",
    oninput: (event) => {
      state.alpha = event.target.value;
      alphaValue.textContent = `${Math.round(parseFloat(state.alpha) * 100)}%`;
      applyAlpha();
    } });
  const cmap = el("select", { id: "cmap", "aria-label": "colormap", onchange: (event) => {
    state.cmap = event.target.value;
    colorbar.src = url(`api/v1/colormaps/${state.cmap}`);
    colorbar.alt = `${state.cmap} colour scale`;
    onChange();
  } }, CMAPS.map((name) => el("option", { value: name, selected: name === state.cmap }, name)));
  const sign = el("select", { id: "sign", "aria-label": "which relevance to show", onchange: (event) => {
    state.sign = event.target.value;
    scale.firstChild.textContent = state.sign === "all" ? "−" : "low";
    scale.lastChild.textContent = state.sign === "all" ? "+" : "high";
    onChange();
  } }, Object.entries(SIGNS).map(([value, text]) => el("option", { value, selected: value === state.sign }, text)));
  return [
    field("Display", el("div", { class: "inline" }, overlay, alpha, alphaValue)),
    field("Colormap", el("div", { class: "inline" }, cmap, sign, el("span", { class: "colorbar-wrap" }, colorbar, scale))),
  ];
}
