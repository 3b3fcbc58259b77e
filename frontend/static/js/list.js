// The summary list: every summary directory below the served folder, filtered by text, refreshed while runs go on.
import { debounce, el, fill, getJSON, localTime, plural, progressBar, readQuery, relativeTime, showError, statusBadge,
  url, writeQuery } from "./util.js";

const POLL_MS = 5000;
const container = document.getElementById("summaries");
const filter = document.getElementById("filter");
const count = document.getElementById("list-count");
const compareButton = document.getElementById("compare-selected");
const selected = new Set();
let rows = [];

function chips(names, empty) {
  if (!names.length) return el("span", { class: "muted" }, empty);
  return el("span", { class: "chips" }, names.map((name) => el("span", { class: "chip" }, name)));
}

function summaryRow(row) {
  const broken = row.status === "error" || !row.created_at;
  const check = el("input", { type: "checkbox", "aria-label": `select ${row.name} for comparison`, checked: selected.has(row.id),
    disabled: broken, onchange: (event) => {
      if (event.target.checked) selected.add(row.id); else selected.delete(row.id);
      updateCompareButton();
    } });
  const name = broken
    ? el("span", { class: "name" }, row.name)
    : el("a", { class: "name", href: url(`s/${row.id}`) }, row.name);
  const status = row.status === "running"
    ? el("div", { class: "status-line" }, statusBadge(row), progressBar(row.progress.done, row.progress.total))
    : statusBadge(row);
  const links = broken ? el("span", { class: "muted" }, "–") : el("span", { class: "row-links" },
    el("a", { href: url(`s/${row.id}`) }, "Browse"), el("a", { href: url(`s/${row.id}/scores`) }, "Scores"));
  const tr = el("tr", { class: broken ? "broken" : "", dataset: { id: row.id } },
    el("td", { class: "select" }, check),
    el("td", {}, name, el("div", { class: "path muted" }, row.path)),
    el("td", {}, status),
    el("td", { class: "num" }, broken ? "–" : row.num_samples.toLocaleString()),
    el("td", {}, broken ? "–" : chips(row.explainers, "none")),
    el("td", {}, broken ? "–" : chips(row.metrics, "none")),
    el("td", { title: localTime(row.updated_at) }, relativeTime(row.updated_at)),
    el("td", {}, links));
  const result = [tr];
  if (row.error) {
    result.push(el("tr", { class: row.status === "error" ? "error-row broken" : "error-row" },
      el("td", {}), el("td", { colspan: "7" }, el("span", { class: "error-text" }, row.error))));
  }
  return result;
}

function updateCompareButton() {
  for (const id of [...selected]) if (!rows.some((row) => row.id === id)) selected.delete(id);
  compareButton.disabled = selected.size < 2;
  compareButton.textContent = selected.size ? `Compare selected (${selected.size})` : "Compare selected";
}

function render(data) {
  rows = data.summaries;
  const query = filter.value.trim();
  count.textContent = query
    ? `${plural(data.total, "summary", "summaries")} match “${query}”`
    : `${plural(data.total, "summary", "summaries")} found`;
  if (!rows.length) {
    fill(container, el("div", { class: "empty" },
      el("p", {}, query ? "No summary matches this filter." : "No summary directories found below this folder."),
      query ? null : el("p", { class: "muted" }, "Write one with ", el("code", {}, "xaiboard demo --no-serve --out ."),
        " or the runner, then it appears here within seconds.")));
    updateCompareButton();
    return;
  }
  const table = el("table", { class: "table summaries" },
    el("thead", {}, el("tr", {}, ["", "Name", "Status", "Samples", "Explainers", "Metrics", "Updated", ""].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map(summaryRow)));
  fill(container, table);
  updateCompareButton();
}

let controller = null;
async function load() {
  if (controller) controller.abort();
  controller = new AbortController();
  const q = filter.value.trim();
  try {
    const data = await getJSON(url(`api/v1/summaries?limit=1000${q ? "&q=" + encodeURIComponent(q) : ""}`), { signal: controller.signal });
    render(data);
  } catch (error) {
    if (error.name !== "AbortError") showError(container, error);
  }
}

filter.value = readQuery().q || "";
filter.addEventListener("input", debounce(() => {
  writeQuery({ q: filter.value.trim() }, { q: "" });
  load();
}, 150));
compareButton.addEventListener("click", () => {
  window.location.href = url(`compare?ids=${[...selected].join(",")}`);
});
load();
setInterval(() => { if (!document.hidden) load(); }, POLL_MS);
