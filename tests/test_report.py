"""The HTML report of a small run directory: its numbers, its size, and how it renders in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synvita.cli import main as cli_main
from synvita.data.records import SyntheticClip, Triplet, WeightRow, write_manifest
from synvita.data.video import write_video
from synvita.report.html import build_report

# (triplet, misalignment, generator, f_target, f_real, margin weight); gaps by hand:
# count/toy-a: 0.5, -0.25 -> mean 0.125, median 0.125, 50% below zero.
SCORED = [
    ("t1", "count", "toy-a", 0.9, 0.4, 0.50),
    ("t2", "count", "toy-a", 0.5, 0.75, 0.00),
    ("t1", "count", "toy-b", 0.8, 0.7, 0.10),
    ("t3", "flip", "toy-a", 0.6, 0.3, 0.30),
    ("t3", "flip", "toy-b", 0.2, 0.9, 0.00),
    ("t2", "count", "toy-b", 0.95, 0.05, 0.90),
]
CAPTIONS = {"t1": ("two red balls roll", "three red balls roll", "count"),
            "t2": ("a cube falls", "two cubes fall", "count"),
            "t3": ("a ball rolls then stops", "a ball stops then rolls", "flip")}


def moving_square(colour, frames=8, h=48, w=64):
    video = np.full((frames, h, w, 3), 235, np.uint8)
    for i in range(frames):
        video[i, 16:32, 4 + 6 * i: 20 + 6 * i] = colour
    return video


def make_run(run: Path) -> Path:
    rng = np.random.default_rng(0)
    triplets = []
    for tid, (caption, negative, kind) in CAPTIONS.items():
        video = f"real/{tid}.mp4"
        if tid != "t3":  # t3's real video lives on another machine: the card must say so
            write_video(run / video, moving_square(rng.integers(0, 200, 3)), fps=8)
        triplets.append(Triplet(tid, video, caption, negative, kind, "toy", "train"))
    write_manifest(run / "triplets.jsonl", triplets)
    clips, weights = [], []
    for i, (tid, kind, gen, ft, fr, margin) in enumerate(SCORED):
        cid = f"{tid}-{gen}"
        path = f"clips/{gen}/{cid}.mp4"
        write_video(run / path, moving_square(rng.integers(0, 200, 3)), fps=8)
        clips.append(SyntheticClip(cid, tid, CAPTIONS[tid][1], gen, i, path, "done", {"steps": 2}, 8))
        weights.append(WeightRow(cid, tid, gen, kind, ft, fr,
                                 {"m1": {"target": ft, "real": fr}, "m2": {"target": ft, "real": fr}},
                                 {"margin": margin, "fixed": 1.0}))
    clips.append(SyntheticClip("t3-toy-c", "t3", CAPTIONS["t3"][1], "toy-c", 9, "", "failed", error="NaN latents"))
    write_manifest(run / "clips.jsonl", clips)
    write_manifest(run / "weights.jsonl", weights)
    results = {"base": {"videocon-llm": 71.25, "ssv2-temporal": 10.5}, "synvita": {"videocon-llm": 78.5, "ssv2-temporal": 9.75}}
    for name, by_bench in results.items():
        for bench, value in by_bench.items():
            metric = "auc" if bench == "videocon-llm" else "mAP"
            (run / "eval" / name).mkdir(parents=True, exist_ok=True)
            (run / "eval" / name / f"{bench}.json").write_text(json.dumps({
                "benchmark": bench, metric: value, f"{metric}_tie_aware": value, "counts": {"pairs": 10},
                "provenance": {"model": f"tiny-{name}", "frames": 4, "seed": 0}}))
    (run / "train" / "synvita").mkdir(parents=True)
    with open(run / "train" / "synvita" / "metrics.jsonl", "w") as f:
        for step in range(1, 21):
            f.write(json.dumps({"step": step, "lr": 1e-4, "loss": 2 / step, "loss_real": 1 / step, "loss_syn": 0.7 / step,
                                "loss_scr": 0.3 / step, "w_mean": 0.4, "w_min": 0.0, "w_max": 0.9, "w_zero_share": 0.3}) + "\n")
    (run / "train" / "synvita" / "resolved.yaml").write_text("model: tiny\nlr: 1.0e-4\n")
    return run


class Tables(HTMLParser):
    """Rows of every table: lists of (tag, class, text) cells."""

    def __init__(self):
        super().__init__()
        self.rows, self.cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th") and self.rows:
            self.cell = [tag, dict(attrs).get("class"), ""]

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[2] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(tuple(self.cell))
            self.cell = None


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("run"))
    assert cli_main(["report", str(run)]) == 0
    return run / "report.html"


def test_numbers_in_the_report(report):
    html = report.read_text()
    rows = Tables()
    rows.feed(html)
    texts = [[c[2] for c in r] for r in rows.rows]
    # results: runs are rows, benchmarks columns in the paper's order, tie-aware twins left out
    assert ["videocon-llm", "ssv2-temporal"] == [c[2] for c in rows.rows[0][1:3]]
    assert texts[1] == ["auc", "mAP"]
    base, synvita = (r for r in rows.rows if r and r[0][2] in ("base", "synvita"))
    assert [c[2] for c in base[1:3]] == ["71.2", "10.5"] and [c[2] for c in synvita[1:3]] == ["78.5", "9.750"]
    assert [c[1] for c in base[1:3]] == [None, "best"] and [c[1] for c in synvita[1:3]] == ["best", None]
    # gap table, from the hand-worked values above
    count_a = next(t for t in texts if t[:2] == ["count", "toy-a"])
    assert count_a[2:] == ["2", "0.125", "-0.062", "0.125", "0.312", "50%"]
    flip_b = next(t for t in texts if t[:2] == ["flip", "toy-b"])
    assert flip_b[2:] == ["1", "-0.700", "-0.700", "-0.700", "-0.700", "100%"]
    # gallery: every done clip, the failed one counted, the missing real video named
    cards = re.findall(r'<div class="card" ([^>]*)>', html)
    assert len(cards) == 6
    assert "1 failed generations not shown" in html
    assert html.count("real/t3.mp4: file does not exist") == 2
    gifs = re.findall(r'<img src="(data:image/gif;base64,[^"]+)"', html)
    assert len(gifs) == 6 + 4 and len(set(gifs)) == 6 + 2  # t1 and t2 each show their real video twice
    # offline: nothing is fetched from anywhere
    assert not re.search(r'(src|href)="(https?:)?//|url\(|@import', html)


def test_gallery_size_is_configurable_and_spread_over_weights(report, tmp_path):
    page = build_report(report.parent, max_clips=3, thumb_width=64, thumb_frames=2)
    margins = sorted(float(m) for m in re.findall(r'data-w-margin="([^"]+)"', page))
    # sorted margins 0, 0, .1, .3, .5, .9; indices round(linspace(0, 5, 3)) = 0, 2(.5->2), 5
    assert margins == [0.0, 0.1, 0.9]
    assert len(page) < report.stat().st_size
    assert report.stat().st_size < 20e6


def test_an_empty_run_directory_says_what_is_missing(tmp_path):
    page = build_report(tmp_path)
    for what in ("eval/&lt;run&gt;/&lt;benchmark&gt;.json", "weights.jsonl", "clips.jsonl", "train/&lt;run&gt;/metrics.jsonl"):
        assert f"no {what} in this run directory" in page


# --- in a browser ------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Injected first into a copy of the page: records script errors and console.error calls, then at
# load reports the images, and drives the sort controls to check the gallery's inline script.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message)));
const __consoleError = console.error;
console.error = (...args) => { window.__errors.push(args.join(' ')); __consoleError(...args); };
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const key = document.getElementById('sort-key'), dir = document.getElementById('sort-dir');
  key.value = 'w-margin'; dir.value = 'desc'; dir.dispatchEvent(new Event('change'));
  const desc = Array.from(document.querySelectorAll('#clip-cards .card')).map(c => c.getAttribute('data-w-margin'));
  key.value = 'gap'; dir.value = 'asc'; key.dispatchEvent(new Event('change'));
  const asc = Array.from(document.querySelectorAll('#clip-cards .card')).map(c => c.getAttribute('data-gap'));
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({images: images.length, broken, errors: window.__errors, desc, asc});
  document.body.appendChild(out);
});
</script>"""


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
             # any request leaving the page fails, so a non-embedded image would show as broken
             "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium; .ci/run does it)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("<head>", "<head>" + PROBE, 1))
    result = chromium(tmp_path / "profile1", "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the probe did not run: {result.stderr[-2000:]}"
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["errors"] == []
    assert probe["broken"] == [] and probe["images"] == 10 + 2  # gallery thumbnails + 2 plots
    assert [float(v) for v in probe["desc"]] == sorted((s[5] for s in SCORED), reverse=True)
    assert [float(v) for v in probe["asc"]] == pytest.approx(sorted(s[3] - s[4] for s in SCORED))
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console

    shot = tmp_path / "shot.png"
    result = chromium(tmp_path / "profile2", "--window-size=1280,1400", "--hide-scrollbars",
                      f"--screenshot={shot}", report.as_uri())
    assert shot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (1400, 1280)
    assert pixels.std() > 20 and (pixels < 200).mean() > 0.03, "the screenshot is blank"
