// The label filter: classes with their TP/FN/FP/TN counts, searchable and sortable. Classes with samples (the ground
// truth or the prediction of an explained sample) come first; the others (most of a 1,000-class model, some only
// explained as a top-k TN) are listed, and their rows built, only when asked for.
import { TYPES, TYPE_HELP, el, fill } from "./util.js";

export const LABEL_SORTS = { count: "count", name: "name" };

function total(label, types) {
  return (types.length ? types : TYPES).reduce((sum, t) => sum + (label.counts[t] || 0), 0);
}

function hasSamples(label) {
  return label.counts.TP + label.counts.FN + label.counts.FP > 0;
}

function countBadges(label) {
  return TYPES.map((t) => el("span", { class: `count count-${t}${label.counts[t] ? "" : " zero"}`, title: `${t}: ${TYPE_HELP[t]}` }, `${t} ${label.counts[t]}`));
}

/**
 * view: {labels, selected, sort, showAll, types}; onSelect(indexes) when the ticked labels change, onView() when
 * the sort or the "without samples" toggle changes (both are kept in the URL by the caller).
 * Returns {node, update(labels)}.
 */
export function labelFilter(view, onSelect, onView) {
  let labels = view.labels;
  const byIndex = () => new Map(labels.map((l) => [l.index, l]));
  const summaryText = el("span", { class: "dropdown-text" });
  const setSummary = () => {
    const known = byIndex();
    const names = view.selected.map((i) => (known.get(i) || { name: String(i) }).name);
    summaryText.textContent = !names.length ? "All labels" : names.length <= 2 ? names.join(", ") : `${names.length} labels`;
  };
  const search = el("input", { type: "search", class: "menu-search", placeholder: "Find a class", "aria-label": "find a class", oninput: () => draw() });
  const sortGroup = el("div", { class: "segmented", role: "group", "aria-label": "sort classes by" }, Object.entries(LABEL_SORTS).map(([value, text]) =>
    el("label", { class: "segment" }, el("input", { type: "radio", name: "label-sort", value, checked: view.sort === value, onchange: () => {
      view.sort = value;
      onView();
      draw();
    } }), el("span", {}, text))));
  const showAll = el("input", { type: "checkbox", id: "label-show-all", role: "switch", checked: view.showAll, onchange: (event) => {
    view.showAll = event.target.checked;
    onView();
    draw();
  } });
  const withoutCount = el("span", { class: "muted" });
  const options = el("div", { class: "menu-options", role: "group", "aria-label": "classes" });
  const info = el("span", { class: "muted small menu-info" });
  options.addEventListener("change", (event) => {
    const index = parseInt(event.target.value, 10);
    view.selected = event.target.checked ? [...view.selected, index].sort((a, b) => a - b) : view.selected.filter((i) => i !== index);
    setSummary();
    onSelect(view.selected);
  });

  const option = (label) => el("label", { class: `menu-option${hasSamples(label) ? "" : " no-samples"}` },
    el("input", { type: "checkbox", value: String(label.index), checked: view.selected.includes(label.index), "aria-label": `label ${label.name}` }),
    el("span", { class: "option-name", title: label.name }, label.name),
    el("span", { class: "option-counts" }, countBadges(label)));

  // Rows are built only for the classes the menu lists: a dozen, not a thousand, unless asked for.
  function draw() {
    const needle = search.value.trim().toLowerCase();
    const matches = (l) => !needle || l.name.toLowerCase().includes(needle) || String(l.index) === needle;
    const chosen = new Set(view.selected);
    const withSamples = labels.filter(hasSamples);
    const hidden = labels.length - withSamples.length;
    withoutCount.textContent = `(${hidden.toLocaleString()})`;
    const listed = labels.filter((l) => matches(l) && (view.showAll || chosen.has(l.index) || hasSamples(l)));
    const key = view.sort === "name" ? (a, b) => a.name.localeCompare(b.name) || a.index - b.index
      : (a, b) => total(b, view.types) - total(a, view.types) || a.index - b.index;
    listed.sort((a, b) => (hasSamples(b) - hasSamples(a)) || key(a, b));
    const fragment = document.createDocumentFragment();
    for (const label of listed) fragment.append(option(label));
    const missed = view.showAll || !needle ? 0 : labels.filter((l) => matches(l) && !hasSamples(l) && !chosen.has(l.index)).length;
    if (!listed.length) fragment.append(el("p", { class: "muted small menu-empty" }, needle ? "No class with samples matches." : "No class has samples yet."));
    if (missed) {
      fragment.append(el("button", { type: "button", class: "button small menu-more", onclick: () => { showAll.checked = true; showAll.dispatchEvent(new Event("change")); } },
        `Show ${missed.toLocaleString()} matching ${missed === 1 ? "class" : "classes"} without samples`));
    }
    options.replaceChildren(fragment);
    info.textContent = `${listed.length.toLocaleString()} of ${labels.length.toLocaleString()} classes`;
  }

  const clear = el("button", { type: "button", class: "button small", onclick: () => {
    view.selected = [];
    for (const box of options.querySelectorAll("input:checked")) box.checked = false;
    setSummary();
    onSelect(view.selected);
  } }, "Clear");
  const details = el("details", { class: "dropdown", id: "label-filter" },
    el("summary", { class: "button" }, summaryText, el("span", { class: "caret", "aria-hidden": "true" }, "▾")),
    el("div", { class: "menu" }, search,
      el("div", { class: "menu-tools" }, el("span", { class: "muted small" }, "Sort by"), sortGroup, el("span", { class: "spacer" }),
        el("label", { class: "mini-switch", title: "list the classes no explained sample has" }, showAll,
          el("span", { class: "switch-track", "aria-hidden": "true" }), el("span", {}, "without samples "), withoutCount)),
      options, el("div", { class: "menu-actions" }, info, el("span", { class: "spacer" }), clear)));
  setSummary();
  draw();
  return {
    node: details,
    update(fresh) {
      labels = fresh;
      setSummary();
      const known = byIndex();
      for (const row of options.querySelectorAll(".menu-option")) {
        const label = known.get(parseInt(row.querySelector("input").value, 10));
        if (label) fill(row.querySelector(".option-counts"), countBadges(label));
      }
    },
  };
}
