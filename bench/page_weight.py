"""Bytes and time per dashboard page in Chromium, against the goals for ImageNet-size summaries.

1. Starts the real server (``xaiboard serve``, waitress) over a base directory in a child process.
2. Opens each page in Debian's Chromium (Playwright, headless, 1400 x 900, a new browser context per visit so the
   browser cache is cold) and waits until it is fully rendered: for the saliency browser, every image inside the
   viewport loaded (images below it load when scrolled to); for the evaluation page, the table, the confusion
   matrix and every chart in the viewport drawn (the time until every chart below is drawn too is printed beside). Then the network must be idle, and every byte that crossed it is counted (bodies as sent, i.e.
   compressed, plus headers).
3. Each page is visited once right after the server started (its tile cache cold) and three more times (median).

Pages: the default saliency page, 200 per page, and the evaluation page of the photos demo (1000 classes, 224 x 224
photos); 200 per page also on the summary with the most samples when there is a larger one (the digits demo).
Goals on a 2-core machine: default saliency page < 2 MB and < 1.5 s, 200 per page < 5 s, evaluation page < 1.5 s.

Run ``xaiboard demo --dataset photos --no-serve`` (and ``xaiboard demo --no-serve``) first, then
``python bench/page_weight.py [--base xaiboard-runs]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from server_latency import Server

GOALS = {"saliency, default": (2_000_000, 1.5), "saliency, 200 per page": (None, 5.0), "evaluation": (None, 1.5)}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 900}

# True once the page shows what it will show without scrolling.
SALIENCY_READY = """() => {
  const results = document.getElementById("results");
  if (!results || results.classList.contains("loading") || !results.querySelector("tr.sample-row")) return false;
  const inView = [...document.querySelectorAll("#results img")].filter((img) => {
    const box = img.getBoundingClientRect();
    return box.bottom > 0 && box.top < window.innerHeight && box.right > 0 && box.left < window.innerWidth;
  });
  return inView.length > 0 && inView.every((img) => img.complete && img.naturalWidth > 0);
}"""
EVALUATION_READY = """() => {
  const inView = (node) => { const box = node.getBoundingClientRect(); return box.bottom > 0 && box.top < window.innerHeight; };
  const drawn = (chart) => chart._fullLayout || chart.querySelector(".alert");
  return document.querySelector("table.scores") !== null
    && document.querySelector("#confusion-matrix, .confusion-message") !== null
    && [...document.querySelectorAll(".chart")].filter(inView).every(drawn);
}"""
# Every chart of the page drawn, in view or not: when plotly.js has loaded and drawn them all.
ALL_CHARTS = """() => { const charts = [...document.querySelectorAll(".chart")];
  return charts.length > 0 && charts.every((chart) => chart._fullLayout || chart.querySelector(".alert")); }"""


def visit(browser, url: str, ready: str, complete: str | None = None) -> tuple[int, float, int, float | None]:
    """(bytes transferred, seconds from navigation to fully rendered, requests, seconds until ``complete`` holds)
    of one cold-cache visit."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    finished, pending = [], set()
    page.on("request", lambda request: pending.add(request))
    page.on("requestfinished", lambda request: (pending.discard(request), finished.append(request)))
    page.on("requestfailed", lambda request: pending.discard(request))
    page.goto(url)
    page.wait_for_function(ready, polling="raf", timeout=60_000)
    seconds = page.evaluate("() => performance.now()") / 1000
    done = None
    if complete:
        page.wait_for_function(complete, polling="raf", timeout=60_000)
        done = page.evaluate("() => performance.now()") / 1000
    quiet_since = time.monotonic()
    deadline = quiet_since + 30
    while time.monotonic() < deadline:  # idle: nothing in flight for half a second
        page.wait_for_timeout(100)
        if pending:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 0.5:
            break
    total = 0
    for request in finished:
        sizes = request.sizes()
        total += max(sizes["responseBodySize"], 0) + max(sizes["responseHeadersSize"], 0)
    context.close()
    return total, seconds, len(finished), done


def summaries(server: Server) -> list[dict]:
    rows = json.loads(server.get("/api/v1/summaries?limit=1000")[1])["summaries"]
    details = [json.loads(server.get(f"/api/v1/summaries/{row['id']}")[1]) for row in rows if row["status"] != "error"]
    return [d for d in details if d.get("num_samples")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=Path("xaiboard-runs"), help="base directory of the summaries")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        print("Debian's chromium is needed (apt-get install chromium)", file=sys.stderr)
        return 2
    server = Server(args.base)
    try:
        found = summaries(server)
        photos = [d for d in found if len(d["labels"]) >= 1000]
        if not photos:
            print(f"no 1000-class summary below {args.base}: run `xaiboard demo --dataset photos --no-serve` first",
                  file=sys.stderr)
            return 2
        photo = max(photos, key=lambda d: d["num_samples"])
        largest = max(found, key=lambda d: d["num_samples"])
        pages = [("saliency, default", photo, f"/s/{photo['id']}", SALIENCY_READY),
                 ("saliency, 200 per page", photo, f"/s/{photo['id']}?limit=200", SALIENCY_READY),
                 ("evaluation", photo, f"/s/{photo['id']}/scores", EVALUATION_READY)]
        if largest["num_samples"] > photo["num_samples"]:
            pages.insert(2, ("saliency, 200 per page", largest, f"/s/{largest['id']}?limit=200", SALIENCY_READY))
        print(f"server at 127.0.0.1:{server.port}; Chromium {VIEWPORT['width']}x{VIEWPORT['height']}, cold browser "
              f"cache per visit; median of {args.repeats} visits after a first one on a cold server")
        print(f"{'page':<24} {'summary':<28} {'first visit':>20} {'later visits':>20} {'requests':>8}  goal")
        failed = False
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            for name, detail, path, ready in pages:
                url = f"http://127.0.0.1:{server.port}{path}"
                complete = ALL_CHARTS if ready == EVALUATION_READY else None
                first = visit(browser, url, ready, complete)
                later = [visit(browser, url, ready, complete) for _ in range(args.repeats)]
                size = statistics.median(v[0] for v in later)
                seconds = statistics.median(v[1] for v in later)
                max_bytes, max_seconds = GOALS[name]
                ok = seconds < max_seconds and (max_bytes is None or size < max_bytes)
                ok_first = first[1] < max_seconds and (max_bytes is None or first[0] < max_bytes)
                failed |= not ok
                goal = (f"< {max_bytes / 1e6:.0f} MB, " if max_bytes else "") + f"< {max_seconds} s"
                label = f"{detail['name']} ({detail['num_samples']}, {len(detail['labels'])} cl.)"
                print(f"{name:<24} {label:<28} {first[0] / 1e6:>7.2f} MB {first[1]:>6.2f} s"
                      f"{'' if ok_first else '!'}  {size / 1e6:>7.2f} MB {seconds:>6.2f} s {later[0][2]:>8}  "
                      f"{goal} {'ok' if ok else 'MISSED'}")
                if complete:
                    print(f"{'':<24} every chart drawn (below the fold too): first visit {first[3]:.2f} s, later "
                          f"{statistics.median(v[3] for v in later):.2f} s")
            browser.close()
    finally:
        server.process.terminate()
        server.process.wait()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
