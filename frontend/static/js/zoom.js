// The large view of one sample: its image with the label's boxes and the map of every selected explainer, each
// requested at the size its frame is shown (the stored size once the frame is at least that large).
import { debounce, el, fill, getJSON, requestSize, showError, sized, swatch } from "./util.js";
import { boxesOverlay, labelButton, mapImage, nativeSize } from "./cells.js";
import { loadDiagnostics } from "./diagnostics.js";
import { loadInside } from "./inside.js";

/**
 * ctx: {api, dialog, explainers() -> selected names, colors: Map, render() -> map query without size,
 * samples() -> the rows of the page, labelOf(sample), onShow(sampleId, labelIndex), onClose()}.
 */
export function createZoom(ctx) {
  const zoom = ctx.dialog;
  // Each open (and each close) takes a new number; an answer that arrives after a newer open or a close is
  // dropped, so a slow request cannot reopen a view the user has just closed.
  let request = 0;
  let native = null;

  // Images get their address once laid out: the frame's width decides the size asked for; a wider window later
  // asks for a larger one.
  function sizeImages() {
    for (const img of zoom.querySelectorAll("img[data-base]")) {
      const width = img.parentElement.clientWidth;
      if (!width) continue;
      const size = requestSize(width, native);
      const current = img.dataset.size;
      if (img.getAttribute("src") && (!current || (size && size <= parseInt(current, 10)))) continue; // never fetch a smaller one
      const extra = img.classList.contains("map") ? ctx.render() : "";
      const src = sized(img.dataset.base, size, extra);
      if (img.getAttribute("src") !== src) img.src = src;
      img.dataset.size = size ? String(size) : "";
    }
  }

  async function open(sampleId, labelIndex) {
    const mine = ++request;
    const names = ctx.explainers();
    let sample;
    try {
      sample = await getJSON(`${ctx.api}/samples/${sampleId}?explainers=${encodeURIComponent(names.join(","))}`);
    } catch (error) {
      if (mine !== request) return;
      fill(zoom, el("div", { class: "zoom-body" }, el("button", { type: "button", class: "button close", onclick: () => zoom.close() }, "Close")));
      showError(zoom.firstChild, error);
      if (!zoom.open) zoom.showModal();
      return;
    }
    if (mine !== request) return;
    native = nativeSize(sample);
    const explained = sample.labels.filter((l) => l.type);
    const labels = explained.length ? explained : sample.labels;
    let label = labels.find((l) => l.index === labelIndex) || labels[0];
    ctx.onShow(sampleId, label ? label.index : null);
    const rows = ctx.samples();
    const position = rows.findIndex((s) => s.id === sampleId);
    const step = (delta) => {
      const next = rows[position + delta];
      if (next) open(next.id, ctx.labelOf(next) && ctx.labelOf(next).index);
    };
    const inside = el("div", { class: "inside" }); // per sample: kept as the label changes
    const render = () => {
      const hasBoxes = label && sample.boxes.some((b) => b.label_index === label.index);
      const original = el("figure", { class: "zoom-figure" },
        el("div", { class: "zoom-frame" }, el("img", { class: "zoom-image", alt: sample.name, dataset: { base: sample.image_url } }),
          label ? boxesOverlay(sample.boxes.filter((b) => b.label_index === label.index), sample.width, sample.height) : null),
        el("figcaption", {}, "input", hasBoxes ? " · boxes of this label" : ""));
      const maps = names.map((name) => el("figure", { class: "zoom-figure", dataset: { explainer: name } },
        el("div", { class: "zoom-frame" }, mapImage(sample, label, name, ctx.render(), undefined)),
        el("figcaption", {}, swatch(ctx.colors.get(name)), name)));
      const diagnostics = el("div", { class: "diagnostics" });
      fill(zoom, el("div", { class: "zoom-body" },
        el("div", { class: "zoom-head" },
          el("h2", {}, sample.name), el("span", { class: "muted" }, `#${sample.id}`),
          el("span", { class: "muted small" }, `${names.length} of ${ctx.colors.size} explainers`), el("span", { class: "spacer" }),
          el("button", { type: "button", class: "button", disabled: position <= 0, onclick: () => step(-1), title: "previous sample (←)" }, "‹"),
          el("button", { type: "button", class: "button", disabled: position < 0 || position >= rows.length - 1, onclick: () => step(1), title: "next sample (→)" }, "›"),
          el("button", { type: "button", class: "button close", onclick: () => zoom.close(), title: "close (Esc)" }, "Close")),
        el("div", { class: "label-list horizontal" }, labels.map((l) => labelButton(l, label && l.index === label.index, (index) => {
          label = labels.find((x) => x.index === index);
          ctx.onShow(sampleId, index);
          render();
        }))),
        el("div", { class: "zoom-grid" }, original, maps), diagnostics, inside));
      if (zoom.open) sizeImages();
      if (label) loadDiagnostics(diagnostics, ctx, sampleId, label.index);
    };
    render();
    loadInside(inside, ctx, sampleId);
    zoom.onkeydown = (event) => {
      if (event.key === "ArrowRight") { event.preventDefault(); step(1); }
      if (event.key === "ArrowLeft") { event.preventDefault(); step(-1); }
    };
    if (!zoom.open) {
      zoom.showModal();
      sizeImages();
    }
  }

  zoom.addEventListener("close", () => {
    request += 1;
    ctx.onClose();
  });
  zoom.addEventListener("click", (event) => { if (event.target === zoom) zoom.close(); });
  window.addEventListener("resize", debounce(() => { if (zoom.open) sizeImages(); }, 250));
  return { open, get isOpen() { return zoom.open; }, close: () => zoom.close() };
}
