"""Toy-world data in the published formats: held-out benchmarks and the training triplets.

Scenes are split by a hash of their caption (`split`): 4 in 5 train, 1 in 10 validation (the base
models' held-out checks, anything one may tune on), 1 in 10 test (the benchmarks only). No benchmark
scene is ever a pretraining, validation or training scene, however many of any are drawn. Every clip here is in the
"real" style. The files are the ones `synvita.evaluation` and `synvita.data` read for the real
benchmarks, with the same columns:
  videocon_llm_entailment.csv   source,videopath,caption,neg_caption,split,misalignment
  videocon_human.csv            video_url,caption,neg_caption,nle,hard (rephrased; hard = order flips)
  eval_ssv2_temporal.csv        videopath,caption,match; 18 two-action templates x 12 clips, each
                                template also present in the reverse order; caption = full prompt
  eval-nextqa-atphard.csv       videopath,question,answer,option,caption (5 statements per question)
  nextqa-atphard.csv            video,frame_count,width,height,question,answer,qid,type,a0..a4
"""

from __future__ import annotations

import csv
import io
import itertools
import random
from pathlib import Path

from tqdm import tqdm

from synvita.data.records import MISALIGNMENTS, Triplet, write_manifest
from synvita.data.video import write_video
from synvita.text.prompts import VIDEOCON_PROMPT
from synvita.toyworld.grammar import _clause, _noun, caption
from synvita.toyworld.negatives import negative
from synvita.toyworld.render import REAL, render
from synvita.toyworld.world import ACTIONS, MAX_OBJECTS, Event, Scene, random_entity, random_scene
from synvita.utils import atomic_write_text, stable_seed

FPS = 8.0
HELD_OUT_SHARE = 5  # one scene in five is held out from training: half validation, half test
SPLITS = ("train", "val", "test")
# The registered benchmarks (`synvita.data.benchmarks`) whose files `write_benchmarks` writes.
WRITTEN = ("videocon-llm", "videocon-human", "ssv2-temporal", "atp-hard")


def split(scene: Scene) -> str:
    h = stable_seed("toyworld-split", caption(scene))
    return "train" if h % HELD_OUT_SHARE else ("test" if h // HELD_OUT_SHARE % 2 == 0 else "val")


def held_out(scene: Scene) -> bool:
    return split(scene) != "train"


def scenes(tag: str, n: int, side: str, keep=lambda s: True) -> list[Scene]:
    """`n` distinct scenes of one side of the split (`SPLITS`), drawn from seeds `tag-0`, `tag-1`, ..."""
    if side not in SPLITS:
        raise ValueError(f"unknown split {side!r}; known: {', '.join(SPLITS)}")
    out, seen = [], set()
    for i in itertools.count():
        s = random_scene(f"{tag}-{i}")
        if split(s) == side and keep(s) and s not in seen:
            seen.add(s)
            out.append(s)
            if len(out) == n:
                return out


def _write_clip(root: Path, rel: str, scene: Scene, frames: int, size: int) -> None:
    # lossless: the same benchmark pixels on every run (`write_video`)
    write_video(root / rel, render(scene, REAL, stable_seed("real", rel), frames, size), FPS, crf=0)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    atomic_write_text(path, buf.getvalue())


def _negatives(scene: Scene, i: int, want: int) -> list[tuple[str, Scene]]:
    """Up to `want` (kind, negative scene) pairs, rotating the kinds so each type is equally common."""
    out = []
    for kind in MISALIGNMENTS[i % 7:] + MISALIGNMENTS[:i % 7]:
        neg = negative(scene, kind, random.Random(f"neg-{i}-{kind}"))
        if neg is not None:
            out.append((kind, neg))
        if len(out) == want:
            break
    return out


def llm_entailment(root: Path, n: int, frames: int, size: int) -> Path:
    rows = []
    for i, s in enumerate(tqdm(scenes("llm", n, "test"), desc="toy videocon-llm", leave=False)):
        rel = f"videos/llm_{i:04d}.mp4"
        _write_clip(root, rel, s, frames, size)
        rows += [["toyworld", rel, caption(s), caption(neg), "test", kind] for kind, neg in _negatives(s, i, 2)]
    path = root / "videocon_llm_entailment.csv"
    _write_csv(path, ["source", "videopath", "caption", "neg_caption", "split", "misalignment"], rows)
    return path


def human(root: Path, n: int, frames: int, size: int) -> Path:
    """Rephrased captions; half the rows negate the event order (hard), half anything else."""
    rows = []
    for i, s in enumerate(tqdm(scenes("human", n, "test", lambda s: len(s.events) > 1), desc="toy videocon-human",
                               leave=False)):
        rel = f"human_{i:04d}.mp4"  # VideoCon-Human's videos are looked up by file name under the root
        _write_clip(root, rel, s, frames, size)
        phrasing = ("first", "after")[i % 2]
        kinds = [("flip", negative(s, "flip", random.Random(f"human-{i}")))] if i % 2 == 0 else _negatives(s, i, 1)
        for kind, neg in kinds:
            if neg is not None:
                nle = f"The video shows: {caption(s, phrasing)}"
                rows.append([f"https://toyworld.invalid/{rel}", caption(s, phrasing), caption(neg, phrasing), nle,
                             str(kind == "flip")])
    path = root / "videocon_human.csv"
    _write_csv(path, ["video_url", "caption", "neg_caption", "nle", "hard"], rows)
    return path


# Two-action sequences whose reverse is also valid for one object: each unordered pair gives two
# templates that differ only in order, which is what makes the retrieval temporal.
_PAIRS = [("move left", "grow"), ("move right", "shrink"), ("move up", "spin"), ("move down", "jump"),
          ("grow", "spin"), ("shrink", "jump"), ("move left", "move up"), ("spin", "jump"), ("grow", "move down")]
TEMPLATES = [p for a, b in _PAIRS for p in ((a, b), (b, a))]
CLIPS_PER_TEMPLATE = 12  # 216 candidates per query, the count the harness (calc_ssv2.py) requires


def template_text(actions: tuple[str, ...]) -> str:
    """SSv2-style: the object is a placeholder, only the actions and their order are named."""
    return ", then ".join(f"something {a.split()[0]}s{' ' + a.split()[1] if ' ' in a else ''}" for a in actions)


def ssv2_temporal(root: Path, frames: int, size: int) -> Path:
    videos = []
    for t, actions in enumerate(tqdm(TEMPLATES, desc="toy ssv2-temporal", leave=False)):
        rng = random.Random(f"ssv2-{t}")
        made = 0
        while made < CLIPS_PER_TEMPLATE:
            # groups too: 40 single objects per template, 1 in 10 of them test, can all miss the test split
            e = random_entity(rng, set(), MAX_OBJECTS)
            s = Scene((e,), tuple(Event(0, a) for a in actions))
            if split(s) != "test":
                continue
            rel = f"videos/ssv2_{t:02d}_{made:02d}.mp4"
            _write_clip(root, rel, s, frames, size)
            videos.append((rel, t))
            made += 1
    rows = [[rel, VIDEOCON_PROMPT.format(text=template_text(actions)), int(t == q)]
            for q, actions in enumerate(TEMPLATES) for rel, t in videos]
    path = root / "eval_ssv2_temporal.csv"
    _write_csv(path, ["videopath", "caption", "match"], rows)
    return path


_OUTCOME = {"move left": "further left", "move right": "further right", "move up": "higher", "move down": "lower",
            "grow": "bigger", "shrink": "smaller", "spin": "upside down", "vanish": "gone", "appear": "visible"}


def _question(scene: Scene, rng: random.Random) -> tuple[str, str, str, list[str]] | None:
    """(type, question, correct statement, 4 distractors) about order (T) or cause (C)."""
    evs = scene.events
    clause = lambda ev: _clause(scene, ev)  # noqa: E731
    if len(evs) > 1 and rng.random() < 0.7:
        k = rng.randrange(len(evs) - 1)
        after = rng.random() < 0.5
        anchor, truth = (evs[k], evs[k + 1]) if after else (evs[k + 1], evs[k])
        rivals = [ev for ev in evs if ev not in (anchor, truth)]
        rivals += [Event(truth.entity, a) for a in rng.sample(ACTIONS, len(ACTIONS))
                   if a != truth.action and Event(truth.entity, a) != anchor]
        say = (lambda ev: f"{clause(anchor)}, then {clause(ev)}") if after else \
            (lambda ev: f"{clause(ev)}, then {clause(anchor)}")
        qtype, question = ("TN", f"what happens after {clause(anchor)}") if after else \
            ("TP", f"what happens before {clause(anchor)}")
    else:
        # an outcome with one cause: the only outcome-changing event of its object
        causes = [ev for ev in evs if ev.action in _OUTCOME and
                  sum(e.entity == ev.entity and e.action in _OUTCOME for e in evs) == 1]
        if not causes:
            return None
        truth = rng.choice(causes)
        who = scene.entities[truth.entity]
        rivals = [Event(truth.entity, a) for a in rng.sample(list(_OUTCOME), len(_OUTCOME)) if a != truth.action]
        say = clause
        qtype = "CW"
        question = f"why {'are' if who.count > 1 else 'is'} {_noun(who, True)} {_OUTCOME[truth.action]} at the end"
    options = list(dict.fromkeys(say(ev)[0].upper() + say(ev)[1:] + "." for ev in rivals))
    right = say(truth)[0].upper() + say(truth)[1:] + "."
    options = [o for o in options if o != right][:4]
    return (qtype, question, right, options) if len(options) == 4 else None


def atp_hard(root: Path, n: int, frames: int, size: int) -> tuple[Path, Path]:
    keep = lambda s: any(ev.action in _OUTCOME for ev in s.events)  # noqa: E731
    eval_rows, qa_rows = [], []
    for i, s in enumerate(tqdm(scenes("atp", n, "test", keep), desc="toy atp-hard", leave=False)):
        rng = random.Random(f"atp-{i}")
        q = _question(s, rng)
        if q is None:
            continue
        qtype, question, right, wrong = q
        options = [right, *wrong]
        rng.shuffle(options)
        answer = options.index(right)
        vid = f"atp_{i:04d}"
        rel = f"videos/{vid}.mp4"
        _write_clip(root, rel, s, frames, size)
        eval_rows += [[rel, question, answer, j, VIDEOCON_PROMPT.format(text=o)] for j, o in enumerate(options)]
        qa_rows.append([vid, frames, size, size, question, answer, i, qtype, *options])
    eval_path, qa_path = root / "eval-nextqa-atphard.csv", root / "nextqa-atphard.csv"
    _write_csv(eval_path, ["videopath", "question", "answer", "option", "caption"], eval_rows)
    _write_csv(qa_path, ["video", "frame_count", "width", "height", "question", "answer", "qid", "type",
                         "a0", "a1", "a2", "a3", "a4"], qa_rows)
    return eval_path, qa_path


def benchmark_writers(root: str | Path, n_llm: int = 120, n_human: int = 100, n_atp: int = 120,
                      frames: int = 12, size: int = 48, resume: bool = False) -> list[tuple]:
    """(writer, *args) for each of the four toy benchmarks; with `resume`, only those not finished in
    `root`. The writers share nothing, so they can run side by side, and each writes its annotation
    files last, each atomically: with all of them present its benchmark is finished."""
    root = Path(root)
    writers = {("videocon_llm_entailment.csv",): (llm_entailment, root, n_llm, frames, size),
               ("videocon_human.csv",): (human, root, n_human, frames, size),
               ("eval_ssv2_temporal.csv",): (ssv2_temporal, root, frames, size),
               ("eval-nextqa-atphard.csv", "nextqa-atphard.csv"): (atp_hard, root, n_atp, frames, size)}
    return [call for files, call in writers.items() if not (resume and all((root / f).is_file() for f in files))]


def write_benchmarks(root: str | Path, n_llm: int = 120, n_human: int = 100, n_atp: int = 120,
                     frames: int = 12, size: int = 48) -> Path:
    """All four toy benchmarks (videos under root/videos); root is the harness's --annotations and --video-root."""
    for write, *args in benchmark_writers(root, n_llm, n_human, n_atp, frames, size):
        write(*args)
    return Path(root)


def write_triplets(run: str | Path, n_scenes: int, negatives_per_scene: int = 2, frames: int = 12,
                   size: int = 48) -> Path:
    """Training triplets (real-style clip, caption t^r, hard negative t^s) as RUN/triplets.jsonl, video
    paths relative to RUN as manifests allow, so the run folder can move."""
    run = Path(run)
    records = []
    for i, s in enumerate(tqdm(scenes("train", n_scenes, "train"), desc="toy triplets", leave=False)):
        rel = f"toy/videos/train_{i:05d}.mp4"
        _write_clip(run, rel, s, frames, size)
        for kind, neg in _negatives(s, i, negatives_per_scene):
            records.append(Triplet(id=f"toy_{i:05d}_{kind}", video=rel, caption=caption(s),
                                   negative=caption(neg), misalignment=kind, source="toyworld", split="train"))
    path = run / "triplets.jsonl"
    write_manifest(path, records)
    return path
