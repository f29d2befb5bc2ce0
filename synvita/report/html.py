"""`synvita report RUN`: one self-contained report.html from whatever stages RUN holds.

Sections (each appears when its files exist, otherwise says what is missing):
results table (eval/*/*.json), alignment-gap distributions (weights.jsonl), a gallery of synthetic
clips beside their real videos (clips.jsonl, clips/, weights.jsonl, triplets.jsonl), and training
curves (train/*/metrics.jsonl). Images are embedded as base64 PNG/GIF; the page loads nothing else.
"""

from __future__ import annotations

import argparse
import datetime
import json
from html import escape
from pathlib import Path

import numpy as np
from tqdm import tqdm

from synvita.data.benchmarks import BENCHMARKS
from synvita.data.records import SyntheticClip, Triplet, WeightRow, read_jsonl, read_manifest
from synvita.data.video import FrameSampler, VideoError, read_video
from synvita.errors import SynvitaError
from synvita.provenance import package_versions
from synvita.report import plots
from synvita.utils import atomic_write_text

SIZE_BUDGET_MB = 20
# Provenance keys worth a glance in the results table; the full block sits behind a click.
PROVENANCE_SUMMARY = ("model", "adapter", "sampler", "frames", "num_frames", "fps", "seed", "date")


class ReportError(SynvitaError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a run directory (see README: the run directory)")
    parser.add_argument("--out", type=Path, help="where to write the page (default RUN/report.html)")
    parser.add_argument("--max-clips", type=int, default=48,
                        help="gallery size; clips are taken evenly across the weight range, so both ends show")
    parser.add_argument("--thumb-width", type=int, default=160, help="thumbnail width in pixels")
    parser.add_argument("--thumb-frames", type=int, default=8, help="frames per animated thumbnail")


def run(args: argparse.Namespace) -> int:
    if not args.run_dir.is_dir():
        raise ReportError(f"{args.run_dir}: not a directory; pass a run directory")
    page = build_report(args.run_dir, args.max_clips, args.thumb_width, args.thumb_frames)
    out = args.out or args.run_dir / "report.html"
    atomic_write_text(out, page)
    size = out.stat().st_size / 1e6
    print(f"{out}: {size:.2f} MB")
    if size > SIZE_BUDGET_MB:
        print(f"warning: over the {SIZE_BUDGET_MB} MB budget; lower --max-clips or --thumb-width")
    return 0


def build_report(run_dir: Path, max_clips: int = 48, thumb_width: int = 160, thumb_frames: int = 8) -> str:
    sections = [
        ("results", "Results", results_section(run_dir)),
        ("gaps", "Alignment gaps of the synthetic clips", gaps_section(run_dir)),
        ("gallery", "Gallery", gallery_section(run_dir, max_clips, thumb_width, thumb_frames)),
        ("training", "Training curves", curves_section(run_dir)),
    ]
    nav = " · ".join(f'<a href="#{key}">{title}</a>' for key, title, _ in sections)
    body = "\n".join(f'<section id="{key}"><h2>{title}</h2>\n{html}</section>' for key, title, html in sections)
    versions = ", ".join(f"{k} {v}" for k, v in package_versions().items())
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return PAGE.format(title=escape(f"SynViTA report: {run_dir.resolve().name}"), nav=nav, body=body,
                       meta=escape(f"{run_dir.resolve()} · built {now} · {versions}"), style=STYLE, script=SCRIPT)


def _missing(what: str) -> str:
    return f'<p class="missing">Nothing to show yet: no {escape(what)} in this run directory.</p>'


def _num(value: float) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


# --- results -------------------------------------------------------------------------------

def metric_keys(result: dict) -> list[str]:
    return [k for k, v in result.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.endswith("_tie_aware")]


def results_section(run_dir: Path) -> str:
    # The harness keeps each predictions file's provenance in a *.predictions.json sidecar.
    files = [f for f in sorted(run_dir.glob("eval/*/*.json")) if not f.name.endswith(".predictions.json")]
    if not files:
        return _missing("eval/<run>/<benchmark>.json")
    results: dict[str, dict[str, dict]] = {}
    for f in files:
        try:
            data = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise ReportError(f"{f}: invalid JSON ({e})") from e
        results.setdefault(f.parent.name, {})[data.get("benchmark", f.stem)] = data
    # Registered benchmarks in registration order (the paper's table); unknown ones follow alphabetically.
    order = [spec.name for spec in BENCHMARKS.in_order()]
    benchmarks = sorted({b for r in results.values() for b in r},
                        key=lambda b: (order.index(b) if b in order else len(order), b))
    columns = [(b, m) for b in benchmarks
               for m in dict.fromkeys(m for r in results.values() if b in r for m in metric_keys(r[b]))]
    best = {c: max((r[c[0]][c[1]] for r in results.values() if c[1] in r.get(c[0], {})), default=None)
            for c in columns}
    head1 = "".join(f'<th colspan="{sum(1 for c in columns if c[0] == b)}">{escape(b)}</th>' for b in benchmarks)
    head2 = "".join(f"<th>{escape(m)}</th>" for _, m in columns)
    rows = []
    for run, by_bench in results.items():
        cells = []
        for b, m in columns:
            value = by_bench.get(b, {}).get(m)
            cls = ' class="best"' if value is not None and value == best[(b, m)] and len(results) > 1 else ""
            cells.append(f"<td{cls}>{_num(value)}</td>")
        rows.append(f"<tr><th>{escape(run)}</th>{''.join(cells)}<td>{_provenance_cell(by_bench)}</td></tr>")
    return (f'<table class="results"><thead><tr><th rowspan="2">run</th>{head1}<th rowspan="2">provenance</th></tr>'
            f"<tr>{head2}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            '<p class="note">Best of each column in bold. Counts, warnings and full provenance per benchmark '
            "behind each run's details.</p>")


def _provenance_cell(by_bench: dict) -> str:
    first = next(iter(by_bench.values())).get("provenance") or {}
    summary = ", ".join(f"{k}={first[k]}" for k in PROVENANCE_SUMMARY if k in first) or "details"
    details = {b: {k: r.get(k) for k in ("provenance", "counts", "warnings", "predictions")} for b, r in by_bench.items()}
    return (f"<details><summary>{escape(summary)}</summary>"
            f"<pre>{escape(json.dumps(details, indent=1, default=str))}</pre></details>")


# --- gaps ----------------------------------------------------------------------------------

def _load(path: Path, cls) -> list:
    return read_manifest(path, cls) if path.is_file() else []


def gaps_section(run_dir: Path) -> str:
    rows = [r for r in _load(run_dir / "weights.jsonl", WeightRow) if r.gap is not None]  # unpaired: no gap
    if not rows:
        return _missing("weights.jsonl")
    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        groups.setdefault((r.misalignment or "unlabelled", r.generator), []).append(r.gap)
    gaps = {k: np.array(v) for k, v in sorted(groups.items())}
    table = "".join(
        f"<tr><td>{escape(kind)}</td><td>{escape(gen)}</td><td>{len(g)}</td><td>{_num(g.mean())}</td>"
        f"<td>{_num(np.quantile(g, .25))}</td><td>{_num(np.median(g))}</td><td>{_num(np.quantile(g, .75))}</td>"
        f"<td>{np.mean(g < 0):.0%}</td></tr>"
        for (kind, gen), g in gaps.items())
    return (f'<img class="plot" alt="alignment gap histograms" src="{plots.figure_uri(plots.gap_figure(gaps))}">'
            '<p class="note">Gap = f̄(V<sup>s</sup>, t<sup>s</sup>) − f̄(V<sup>s</sup>, t<sup>r</sup>): how much better '
            "the synthetic clip matches the caption it was made for than the real caption. Below zero, the clip "
            "shows the real video's content rather than the negative.</p>"
            '<table class="numbers"><thead><tr><th>misalignment</th><th>generator</th><th>n</th><th>mean</th>'
            f"<th>q25</th><th>median</th><th>q75</th><th>share &lt; 0</th></tr></thead><tbody>{table}</tbody></table>")


# --- gallery -------------------------------------------------------------------------------

def _spread(items: list, n: int) -> list:
    """`n` items evenly spaced through `items` (its first and last included)."""
    if len(items) <= n:
        return items
    return [items[i] for i in np.unique(np.round(np.linspace(0, len(items) - 1, n)).astype(int))]


def _resolve(run_dir: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else run_dir / p


def _thumb(path: Path, sampler: FrameSampler, width: int, label: str) -> str:
    try:
        uri = plots.gif_uri(read_video(path, sampler), width)
    except VideoError as e:
        return f'<figure class="nothumb"><div>{escape(str(e))}</div><figcaption>{escape(label)}</figcaption></figure>'
    return f'<figure><img src="{uri}" alt="{escape(label)}" width="{width}"><figcaption>{escape(label)}</figcaption></figure>'


def gallery_section(run_dir: Path, max_clips: int, width: int, frames: int) -> str:
    clips = _load(run_dir / "clips.jsonl", SyntheticClip)
    if not clips:
        return _missing("clips.jsonl")
    done = [c for c in clips if c.status == "done"]
    weights = {w.clip_id: w for w in _load(run_dir / "weights.jsonl", WeightRow)}
    triplets = {t.id: t for t in _load(run_dir / "triplets.jsonl", Triplet)}
    strategies = list(dict.fromkeys(s for w in weights.values() for s in w.weights))
    sort_key = "w-margin" if "margin" in strategies else f"w-{strategies[0]}" if strategies else "gap"

    def value(clip, key):
        w = weights.get(clip.id)
        if w is None or (key == "gap" and w.gap is None):
            return float("nan")
        if key == "gap":
            return w.gap
        if key == "f_target":
            return w.f_target
        return float(w.weights.get(key[2:], float("nan")))

    done.sort(key=lambda c: (np.isnan(value(c, sort_key)), value(c, sort_key)))
    shown = _spread(done, max_clips)
    keys = ["gap", "f_target", *(f"w-{s}" for s in strategies)]
    sampler = FrameSampler("uniform", frames)
    real_thumbs: dict[str, str] = {}  # several clips share one real video
    cards = []
    for clip in tqdm(shown, desc="report: gallery", unit="clip"):
        triplet, w = triplets.get(clip.triplet_id), weights.get(clip.id)
        if triplet and triplet.video not in real_thumbs:
            real_thumbs[triplet.video] = _thumb(_resolve(run_dir, triplet.video), sampler, width, "real video")
        real = real_thumbs[triplet.video] if triplet else '<figure class="nothumb"><div>no triplet</div></figure>'
        data = " ".join(f'data-{k}="{value(clip, k)}"' for k in keys)
        cards.append(
            f'<div class="card" {data}><div class="pair">'
            f"{_thumb(_resolve(run_dir, clip.path), sampler, width, f'synthetic · {clip.generator}')}{real}</div>"
            f'<p><span class="tag">t<sup>s</sup> target</span> {escape(clip.caption)}</p>'
            f'<p><span class="tag">t<sup>r</sup> real</span> {escape(triplet.caption) if triplet else "–"}</p>'
            f"{_scores_table(w)}"
            f'<p class="meta">{escape(clip.id)} · {escape((w and w.misalignment) or (triplet and triplet.misalignment) or "")}'
            f" · seed {clip.seed}</p></div>")
    options = "".join(f'<option value="{k}"{" selected" if k == sort_key else ""}>{escape(k)}</option>'
                      for k in keys)
    note = (f"{len(shown)} of {len(done)} generated clips, spread evenly over {sort_key}"
            f"{f'; {len(clips) - len(done)} failed generations not shown' if len(done) < len(clips) else ''}.")
    return (f'<p class="controls">Sort by <select id="sort-key">{options}</select> '
            '<select id="sort-dir"><option value="asc" selected>lowest first</option>'
            f'<option value="desc">highest first</option></select> <span class="note">{note}</span></p>'
            f'<div id="clip-cards">{"".join(cards)}</div>')


def _scores_table(w: WeightRow | None) -> str:
    if w is None:
        return '<p class="note">not scored yet</p>'
    members = "".join(f"<tr><td>{escape(m)}</td><td>{_num(s.get('target'))}</td><td>{_num(s.get('real'))}</td></tr>"
                      for m, s in w.members.items())
    strategies = "".join(f"<tr><td>{escape(s)}</td><td>{_num(v)}</td></tr>" for s, v in w.weights.items())
    return ('<div class="tables"><table><thead><tr><th>member</th><th>f(t<sup>s</sup>)</th><th>f(t<sup>r</sup>)</th>'
            f"</tr></thead><tbody>{members}<tr class=\"mean\"><td>ensemble</td><td>{_num(w.f_target)}</td>"
            f"<td>{_num(w.f_real)}</td></tr></tbody></table>"
            f"<table><thead><tr><th>weighting</th><th>w</th></tr></thead><tbody>{strategies}</tbody></table></div>")


# --- training ------------------------------------------------------------------------------

def curves_section(run_dir: Path) -> str:
    files = sorted(run_dir.glob("train/*/metrics.jsonl"))
    if not files:
        return _missing("train/<run>/metrics.jsonl")
    parts = []
    for f in files:
        rows = [row for _, row in read_jsonl(f)]
        if not all(isinstance(r, dict) and "step" in r for r in rows):
            raise ReportError(f"{f}: every line needs a JSON object with a 'step'")
        name = f.parent.name
        parts.append(f'<h3>{escape(name)}</h3><img class="plot" alt="training curves of {escape(name)}" '
                     f'src="{plots.figure_uri(plots.curves_figure(rows, name))}">')
        resolved = f.parent / "resolved.yaml"
        if resolved.is_file():
            parts.append(f"<details><summary>resolved.yaml</summary><pre>{escape(resolved.read_text())}</pre></details>")
    return "".join(parts)


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 1300px;
       color: #1d232a; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { border-bottom: 2px solid #dde3ea; padding-bottom: .2rem; }
.meta, .note { color: #5b6672; font-size: .8rem; } .missing { color: #8a5a00; background: #fff6e0; padding: .5rem; }
table { border-collapse: collapse; font-size: .85rem; } th, td { padding: .25rem .5rem; border-bottom: 1px solid #e5e9ee; }
.results td { text-align: right; font-variant-numeric: tabular-nums; } .results td.best { font-weight: 700; }
.results td:last-child { text-align: left; } pre { font-size: .7rem; max-width: 60rem; overflow: auto; }
.numbers td { text-align: right; } img.plot { max-width: 100%; }
#clip-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(370px, 1fr)); gap: .8rem; }
.card { border: 1px solid #dde3ea; border-radius: 6px; padding: .5rem; background: #fafbfc; }
.card p { margin: .3rem 0; font-size: .85rem; } .pair { display: flex; gap: .4rem; }
figure { margin: 0; } figcaption { font-size: .7rem; color: #5b6672; }
.nothumb div { width: 160px; height: 100px; background: #eef1f4; font-size: .65rem; overflow: hidden; padding: .2rem; }
.tag { background: #e3ecf7; border-radius: 3px; padding: 0 .3rem; font-size: .7rem; }
.tables { display: flex; gap: .6rem; align-items: flex-start; } .tables td { text-align: right; }
.tables td:first-child { text-align: left; } tr.mean td { font-weight: 600; }
"""

SCRIPT = """
function sortGallery() {
  const key = document.getElementById('sort-key').value;
  const dir = document.getElementById('sort-dir').value === 'asc' ? 1 : -1;
  const gallery = document.getElementById('clip-cards');
  const value = card => parseFloat(card.getAttribute('data-' + key));
  const cards = Array.from(gallery.children);
  // Unscored clips (NaN) go last in either direction.
  cards.sort((a, b) => (isNaN(value(a)) - isNaN(value(b))) || dir * (value(a) - value(b)));
  cards.forEach(card => gallery.appendChild(card));
}
document.addEventListener('DOMContentLoaded', () => {
  for (const id of ['sort-key', 'sort-dir']) {
    const select = document.getElementById(id);
    if (select) select.addEventListener('change', sortGallery);
  }
});
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{style}</style><script>{script}</script></head>
<body><h1>{title}</h1><p class="meta">{meta}</p><nav>{nav}</nav>
{body}
</body></html>
"""
