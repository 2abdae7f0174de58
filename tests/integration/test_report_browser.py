"""report.md as a reader sees it: rendered to HTML and opened in a real headless Chromium,
which must show the report's tables and load every image (no broken-image boxes).

The page gets a small script that, once everything has loaded, writes what the browser
itself measured (each image's naturalWidth, the tables and rows) into the DOM;
`chromium --dump-dom` prints the DOM after that. A screenshot is taken too, and its pixels
checked for drawn content beyond the page's white.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "runs"
PROBE = """<script>
window.addEventListener('load', () => {
  // Each image drawn onto a canvas: drawImage decodes the whole PNG there and then, so a body
  // that is corrupt under an intact header (naturalWidth still right) leaves pixels undrawn
  // (transparent); the plots are saved opaque. (img.decode() would say the same, but its
  // promise does not settle before --dump-dom prints the page.)
  const images = [...document.images].map(i => {
    const c = document.createElement('canvas');
    c.width = i.naturalWidth; c.height = i.naturalHeight;
    let undrawn = -1, inked = -1, error = null;
    try {
      const ctx = c.getContext('2d');
      ctx.drawImage(i, 0, 0);
      const px = ctx.getImageData(0, 0, c.width, c.height).data;
      undrawn = 0; inked = 0;
      for (let k = 0; k < px.length; k += 4) {
        if (px[k + 3] === 0) undrawn++;
        else if (Math.min(px[k], px[k + 1], px[k + 2]) < 200) inked++;
      }
    } catch (e) { error = String(e); }
    return {src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth,
            height: i.naturalHeight, shown: i.getBoundingClientRect().width, undrawn, inked, error};
  });
  const out = document.createElement('pre');
  out.id = 'gobuild-probe';
  out.textContent = JSON.stringify({images, tables: document.querySelectorAll('table').length,
    rows: document.querySelectorAll('tbody tr').length});
  document.body.appendChild(out);
});
</script>"""
# GitHub's Markdown column is about 1012 px wide
STYLE = ("body{max-width:1012px;margin:0 auto;font:14px sans-serif} img{max-width:100%} "
         "table{border-collapse:collapse} td,th{border:1px solid #d0d7de;padding:3px 8px}")


@pytest.fixture(scope="module")
def chromium() -> str:
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if not found:
        msg = "no chromium: apt-get install chromium (scripts/setup-host.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"the report's browser check is required in CI: {msg}")
        pytest.skip(msg)
    return found


def _page(tmp_path: Path, fixture: str) -> tuple[Path, str]:
    import markdown

    from builder.bench import report

    folder = tmp_path / fixture
    folder.mkdir()
    shutil.copy(FIXTURES / fixture / "results.json", folder / "results.json")
    report.render([folder])
    md = (folder / "report.md").read_text(encoding="utf-8")
    body = markdown.markdown(md, extensions=["tables"])
    page = folder / "report.html"  # beside report.md: the images' relative paths hold
    page.write_text(f'<!doctype html><html><head><meta charset="utf-8"><title>report</title>'
                    f"<style>{STYLE}</style></head><body>{body}{PROBE}</body></html>", encoding="utf-8")
    return page, md


def _browser(chromium: str, *args: str) -> subprocess.CompletedProcess:
    # --no-sandbox: the tests run as root; the page is our own file
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", "--allow-file-access-from-files",
                           "--virtual-time-budget=10000", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("fixture", ["go1.22-slim-amd64", "matrix"])
def test_the_report_shows_its_tables_and_images_in_a_browser(chromium, tmp_path, fixture):
    page, md = _page(tmp_path, fixture)
    done = _browser(chromium, "--dump-dom", page.as_uri())
    found = re.search(r'<pre id="gobuild-probe">(.*?)</pre>', done.stdout, re.DOTALL)
    assert found, f"the page's probe did not run: {done.stderr[-2000:]}"
    seen = json.loads(html.unescape(found.group(1)))
    referenced = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert [i["src"] for i in seen["images"]] == referenced and referenced
    for image in seen["images"]:  # a broken image has naturalWidth 0
        assert image["error"] is None and image["undrawn"] == 0, image  # decoded in full
        assert image["inked"] > 5_000, image  # and drawn on, not blank
        assert image["complete"] and image["width"] >= 800 and image["height"] >= 300, image
        assert image["shown"] > 0, image
    md_tables = len(re.findall(r"^\|---", md, re.MULTILINE))
    md_rows = sum(1 for line in md.splitlines() if line.startswith("| ") and not line.startswith("| suite |"))
    assert seen["tables"] == md_tables >= 2
    assert seen["rows"] > 0 and seen["rows"] <= md_rows


def test_the_probe_sees_a_png_whose_body_is_corrupt(chromium, tmp_path):
    """The check above would pass a damaged plot if the browser did not decode it in full."""
    page, _ = _page(tmp_path, "go1.22-slim-amd64")
    png = page.parent / "plots" / "sched-latency.png"
    data = png.read_bytes()
    png.write_bytes(data[:len(data) // 2] + bytes(len(data) - len(data) // 2))
    done = _browser(chromium, "--dump-dom", page.as_uri())
    found = re.search(r'<pre id="gobuild-probe">(.*?)</pre>', done.stdout, re.DOTALL)
    assert found, f"the page's probe did not run: {done.stderr[-2000:]}"
    seen = {i["src"]: i for i in json.loads(html.unescape(found.group(1)))["images"]}
    assert seen["plots/sched-latency.png"]["undrawn"] > 0, seen["plots/sched-latency.png"]
    assert seen["plots/tooling-latency.png"]["undrawn"] == 0, seen["plots/tooling-latency.png"]


def test_the_screenshot_shows_drawn_plots(chromium, tmp_path):
    from matplotlib.image import imread

    page, _ = _page(tmp_path, "go1.22-slim-amd64")
    shot = tmp_path / "report.png"
    done = _browser(chromium, "--window-size=1100,5200", f"--screenshot={shot}", page.as_uri())
    assert shot.exists(), done.stderr[-2000:]
    pixels = imread(str(shot))[..., :3]
    # a page of text and tables is mostly white; four plots add large areas of coloured lines,
    # bars and grid: count the pixels that are neither white nor grey
    rgb = pixels.reshape(-1, 3)
    coloured = ((rgb.max(axis=1) - rgb.min(axis=1)) > 0.15).sum()
    assert coloured > 20_000, coloured
    if os.environ.get("GOBUILD_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["GOBUILD_KEEP_SCREENSHOT"])
