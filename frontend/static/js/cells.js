// The parts of a sample the grid and the large views share: a label's button with its probability, a map image, and
// the boxes drawn over an image.
import { el, probText, sized, typeBadge } from "./util.js";

export const GRID_PX = 128;

/** The longest side of a sample's stored image (null when unknown). */
export function nativeSize(sample) {
  return sample.width && sample.height ? Math.max(sample.width, sample.height) : null;
}

function probability(label) {
  const bar = el("span", { class: "prob-bar" }, el("span", { class: "prob-fill" }));
  bar.firstChild.style.width = `${Math.max(0, Math.min(1, label.prob)) * 100}%`;
  const interval = label.interval
    ? el("span", { class: "interval", title: `95% interval${label.sd === null || label.sd === undefined ? "" : `, sd ${probText(label.sd)}`}` },
      `[${probText(label.interval[0])}, ${probText(label.interval[1])}]`)
    : label.sd !== null && label.sd !== undefined ? el("span", { class: "interval", title: "standard deviation" }, `± ${probText(label.sd)}`) : null;
  return el("span", { class: "prob" }, bar, el("span", { class: "prob-value", title: `p = ${label.prob}` }, probText(label.prob)), interval);
}

export function labelButton(label, active, onpick) {
  return el("button", { type: "button", class: `label-chip${active ? " active" : ""}`, "aria-pressed": active ? "true" : "false",
    dataset: { label: String(label.index) }, title: `show the maps for ${label.name}`, onclick: () => onpick(label.index) },
    label.ground_truth ? el("span", { class: "gt-mark", title: "ground truth" }, "★") : el("span", { class: "gt-mark gt-none" }, ""),
    el("span", { class: "label-name" }, label.name),
    probability(label),
    typeBadge(label.type));
}

/** One explainer's map of a label. With `size` undefined the image gets no address yet: the large view sets it
 * once it knows how wide the image is shown. */
export function mapImage(sample, label, explainer, render, size, lazy = false) {
  const map = label && label.saliency.find((s) => s.explainer === explainer);
  if (!map) return el("div", { class: "map-missing" }, label ? "no map" : "–");
  return el("img", { class: "map", src: size === undefined ? null : sized(map.url, size, render),
    width: String(GRID_PX), height: String(GRID_PX), loading: lazy ? "lazy" : null, decoding: lazy ? "async" : null,
    alt: `${explainer} map of ${label.name} for ${sample.name}`, dataset: { base: map.url, explainer, size: size ? String(size) : "" } });
}

/** The boxes ({x, y, width, height} in the image's pixels) as an SVG laid over a frame that shows a width x height
 * image: stretched to the frame (`fit` "none") or letterboxed in it like `object-fit: contain` ("meet"). */
export function boxesOverlay(boxes, width, height, fit = "none") {
  if (!boxes.length || !width || !height) return null;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", fit === "meet" ? "xMidYMid meet" : "none");
  svg.setAttribute("class", "boxes");
  for (const box of boxes) {
    const rect = document.createElementNS(ns, "rect");
    for (const [key, value] of Object.entries({ x: box.x, y: box.y, width: box.width, height: box.height })) rect.setAttribute(key, String(value));
    rect.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(rect);
  }
  return svg;
}
