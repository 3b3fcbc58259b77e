"""Write PNG screenshots of every dashboard page to ``docs/screenshots/`` (``make screenshots``).

Runs the demo (two digits runs with different seeds, to compare, the multi-label shapes run, whose large view
shows boxes, the shapes Vision Transformer, whose attention heads the Inside panel shows, and the pretrained photos run at 224 x 224 with 1000 classes) into a temporary folder, serves it with the real server and photographs each page in Chromium; the
list is taken while a further run is still writing, to show its progress. Without
the runner (no torch), synthetic summaries from the server tests stand in. Fails when a page logs a console error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
# Every image due (lazy grid images only once on screen) loaded, every chart drawn.
IMAGES_LOADED = ("() => [...document.querySelectorAll('img')].filter((i) => { const r = i.getBoundingClientRect();"
                 " return i.loading !== 'lazy' || (r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth); })"
                 ".every((i) => i.complete && i.naturalWidth > 0)"
                 " && !document.querySelector('.chart-loading, .results.loading')")


def write_summaries(base: Path, samples: int) -> None:
    """The demo runs: two digits seeds (to compare), the multi-label shapes with the CNN and with the ViT."""
    from xaiboard.runner.demo import run_demo

    # Two digits runs draw different test splits; with enough samples a few digits are in both, to compare.
    for dataset, seed, count in (("digits", 0, 2 * samples), ("digits", 1, 2 * samples), ("shapes", 0, samples)):
        print(f"running the {dataset} demo with seed {seed} on {count} samples…", file=sys.stderr)
        run_demo(dataset=dataset, samples=count, out=base / f"seed-{seed}", serve=False, seed=seed, progress=False)
    print(f"running the shapes demo with the Vision Transformer on {samples} samples…", file=sys.stderr)
    run_demo(dataset="shapes", model="vit", samples=samples, out=base / "seed-0", serve=False, progress=False)


def add_photos(base: Path, existing: Path | None, samples: int) -> None:
    """The photos demo run: copied from ``existing`` (it takes minutes per photo on a CPU) or computed."""
    target = base / "seed-0" / "photos"
    if existing is not None:
        shutil.copytree(existing, target)
        return
    from xaiboard.runner.demo import run_demo

    print(f"running the photos demo on {samples} photos…", file=sys.stderr)
    run_demo(dataset="photos", samples=samples, out=base / "seed-0", serve=False, progress=False)


def start_live_run(base: Path) -> subprocess.Popen:
    """A demo run that is still going while the list is photographed (stopped afterwards)."""
    code = ("from xaiboard.runner.demo import run_demo; "
            f"run_demo(dataset='shapes', samples=600, out={str(base / 'live')!r}, serve=False, seed=3, progress=False)")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until_running(url: str, seconds: float = 240) -> None:
    """Until the list shows the live run with some samples written."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        with urllib.request.urlopen(url + "/api/v1/summaries") as response:
            rows = json.load(response)["summaries"]
        if any(r["path"].startswith("live") and r["status"] == "running" and r["progress"]["done"] for r in rows):
            return
        time.sleep(0.5)
    raise SystemExit("the live demo run did not start writing samples in time")


def first_true_positive(url: str, summary_id: str) -> tuple[dict, int]:
    """A sample of the summary with a true positive, and that label."""
    with urllib.request.urlopen(f"{url}/api/v1/summaries/{summary_id}/samples?types=TP&limit=1") as response:
        sample = json.load(response)["samples"][0]
    return sample, next(label["index"] for label in sample["labels"] if label["type"] == "TP")


def first_with_curves(url: str, summary_id: str) -> tuple[int, int]:
    """A true positive (sample, label) that has perturbation curves (a scored sample), for the diagnostics panels."""
    with urllib.request.urlopen(f"{url}/api/v1/summaries/{summary_id}/samples?types=TP&limit=50") as response:
        samples = json.load(response)["samples"]
    for sample in samples:
        label = next(label["index"] for label in sample["labels"] if label["type"] == "TP")
        with urllib.request.urlopen(f"{url}/api/v1/summaries/{summary_id}/diagnostics/{sample['id']}/{label}") as r:
            if json.load(r)["curves"]:
                return sample["id"], label
    raise SystemExit("no true positive of the photos run has curves")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=40, help="samples of the shapes run (twice as many digits)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--photos", type=Path, help="an existing photos demo summary to show (else computed)")
    parser.add_argument("--photo-samples", type=int, default=4, help="photos to explain when computing them")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from xaiboard.server.serving import make_server, shutdown

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    base = Path(tempfile.mkdtemp(prefix="xaiboard-screenshots-"))
    live = None
    try:
        write_summaries(base, args.samples)
        add_photos(base, args.photos, args.photo_samples)
        live = start_live_run(base)
        server = make_server(base, port=0, reload_interval=0.5)
        threading.Thread(target=server.run, daemon=True).start()
        url = f"http://127.0.0.1:{server.effective_port}"
        with urllib.request.urlopen(url + "/api/v1/summaries") as response:
            rows = json.load(response)["summaries"]
        ids = {row["path"]: row["id"] for row in rows}
        first, second, shapes = ids["seed-0/digits"], ids["seed-1/digits"], ids["seed-0/shapes"]
        photos, vit = ids["seed-0/photos"], ids["seed-0/shapes-vit"]
        vit_sample, vit_label = first_true_positive(url, vit)
        sample, zoom_label = first_true_positive(url, shapes)
        photo, photo_label = first_true_positive(url, photos)
        scored, scored_label = first_with_curves(url, photos)
        pages = [
            ("01-summaries", "/", True),
            ("02-saliency-browser", f"/s/{first}?explainers=Gradient,GradCAM,IntegratedGradients,Occlusion,RISE", False),
            ("03-filtered-false-positives", f"/s/{first}?types=FP,FN&explainers=GradCAM,IntegratedGradients,RISE"
                                            "&overlay=0&cmap=viridis", False),
            ("04-large-view-with-boxes", f"/s/{shapes}?zoom={sample['id']}&zl={zoom_label}", False),
            ("05-evaluation", f"/s/{first}/scores", True),
            ("06-compare", f"/compare?ids={first},{second}", True),
            ("07-photos-browser", f"/s/{photos}?explainers=GradCAM,IntegratedGradients,Occlusion,RISE", False),
            ("08-photos-large-view", f"/s/{photos}?zoom={photo['id']}&zl={photo_label}", False),
            ("09-photos-evaluation", f"/s/{photos}/scores", True),
            ("10-photos-label-filter", f"/s/{photos}?explainers=GradCAM,IntegratedGradients,Occlusion", False),
            ("11-integrated-gradients", f"/s/{photos}?zoom={scored}&zl={scored_label}", False),
            ("12-faithfulness-curves", f"/s/{photos}?zoom={scored}&zl={scored_label}"
                                       "&explainers=GradCAM,Gradient,IntegratedGradients,Occlusion,RISE,Random", False),
            ("13-inside-feature-maps", f"/s/{photos}?zoom={photo['id']}&zl={photo_label}", False),
            # the second attention layer, heads sorted by how much they attend to the shapes' boxes
            ("14-inside-vit-attention", f"/s/{vit}?zoom={vit_sample['id']}&zl={vit_label}&il=blocks.2.attn&isort=box"
                                        "&explainers=AttentionRollout,GradCAM,Gradient,IntegratedGradients", False),
            ("15-vit-browser", f"/s/{vit}?explainers=AttentionRollout,GradCAM,Gradient,IntegratedGradients", False),
        ]
        actions = {
            "10-photos-label-filter": lambda page: page.click("#label-filter summary"),
        }
        # the zoom view's diagnostics panels, photographed alone once drawn
        panels = {"11-integrated-gradients": "integrated-gradients", "12-faithfulness-curves": "curves"}
        args.out.mkdir(parents=True, exist_ok=True)
        errors: list[str] = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1440, "height": 960})
            page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
            for name, path, full_page in pages:
                if name == "01-summaries":
                    wait_until_running(url)
                page.goto(url + path)
                page.wait_for_load_state("networkidle")
                page.wait_for_function(IMAGES_LOADED)
                if name in actions:
                    actions[name](page)
                page.wait_for_timeout(300)
                target = args.out / f"{name}.png"
                if name.startswith("13-inside") or name.startswith("14-inside"):
                    page.wait_for_selector("#zoom .inside[data-state='drawn']")
                    panel = page.locator("#zoom .inside-panel")
                    panel.scroll_into_view_if_needed()
                    page.wait_for_function(IMAGES_LOADED)
                    page.wait_for_timeout(500)
                    panel.screenshot(path=str(target))
                elif name in panels:
                    page.wait_for_selector("#zoom .diagnostics[data-state='drawn']")
                    panel = page.locator(f"#zoom .diag-panel[data-panel='{panels[name]}']")
                    panel.scroll_into_view_if_needed()
                    page.wait_for_function(IMAGES_LOADED)
                    page.wait_for_timeout(500)
                    panel.screenshot(path=str(target))
                else:
                    page.screenshot(path=str(target), full_page=full_page)
                print(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")
                if live.poll() is None:
                    live.send_signal(signal.SIGINT)  # the run records itself as interrupted
                    live.wait(timeout=60)
            browser.close()
        shutdown(server)
        if errors:
            raise SystemExit("console errors:\n" + "\n".join(errors))
    finally:
        if live is not None and live.poll() is None:
            live.kill()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
