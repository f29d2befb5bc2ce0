"""A catalogue of bad inputs a new user hits, run through `synvita <stage>`: each one exits 2 with one
line on stderr, `synvita <stage>: <message>`, naming the offending file or field, and no traceback.

In process (`synvita.cli.main`), so an exception that escapes the contract fails the test itself.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from synvita.cli import main as cli_main

GOOD_TRIPLET = {"id": "t0", "video": "videos/a.mp4", "caption": "a red square", "negative": "a blue square",
                "misalignment": "attribute", "source": "test", "split": "train"}
LLM_HEADER = ["source", "videopath", "caption", "neg_caption", "split", "misalignment"]


def jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def csv_file(path: Path, rows) -> Path:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def generate(tmp: Path, *overrides: str, manifest: Path | None = None) -> list[str]:
    source = manifest or jsonl(tmp / "in" / "triplets.jsonl", [GOOD_TRIPLET])
    return ["generate", "--config", str(Path(__file__).parents[1] / "generation" / "configs" / "external.yaml"),
            f"output_dir={tmp / 'run'}", f"input={source}", "settings.command=null",
            "settings={entry_point: 'test_reliability:flat_generator', fps: 4}", *overrides]


def score(tmp: Path, *overrides: str) -> list[str]:
    config = tmp / "score.yaml"
    config.write_text(f"run_dir: {tmp / 'run'}\nmembers: [{{name: m, kind: llava-1.5, model: 'tiny:llava-1.5'}}]\n")
    return ["score", "--config", str(config), *overrides]


def train(tmp: Path, *overrides: str) -> list[str]:
    jsonl(tmp / "data" / "triplets.jsonl", [GOOD_TRIPLET])
    return ["train", "--config", str(Path(__file__).parents[1] / "recipes" / "configs" / "tiny" / "synvita_cpu.yaml"),
            f"output_dir={tmp / 'train'}", f"data.triplets={tmp / 'data' / 'triplets.jsonl'}",
            "data.clips=null", "data.weights=null", "loss.weighting=fixed", *overrides]


def atp_annotations(tmp: Path) -> Path:
    ann = tmp / "ann"
    ann.mkdir(exist_ok=True)
    csv_file(ann / "eval-nextqa-atphard.csv", [["videopath", "question", "answer", "option", "caption"],
                                               *[["v/1.mp4", "why?", 0, o, f"statement {o}"] for o in range(5)]])
    csv_file(ann / "nextqa-atphard.csv", [["video", "question", "answer", "qid", "type"], [1, "why?", 0, 1, "CW"]])
    return ann


def evaluate(tmp: Path, *args: str) -> list[str]:
    return ["evaluate", "--benchmark", "atp-hard", "--annotations", str(atp_annotations(tmp)),
            "--out", str(tmp / "out.json"), *args]


def predictions(tmp: Path, rows) -> list[str]:
    return evaluate(tmp, "--from-predictions", str(csv_file(tmp / "p.csv", rows)))


def make_run_with_checkpoint(tmp: Path) -> list[str]:
    (tmp / "train" / "checkpoints" / "step-0000002").mkdir(parents=True)
    return train(tmp)


def clips_run(tmp: Path, clip: dict) -> Path:
    jsonl(tmp / "run" / "clips.jsonl", [{"id": "g/t0_001", "triplet_id": "t0", "caption": "a blue square",
                                         "generator": "g", "seed": 0, "path": "clips/g/t0_001.mp4",
                                         "status": "done", **clip}])
    return tmp


# (what the user did, argv builder, text the message must contain: the file or field)
CATALOGUE = [
    # generate
    ("config file missing", lambda t: ["generate", "--config", str(t / "nope.yaml")], "nope.yaml: no such config file"),
    ("config not YAML", lambda t: ["generate", "--config", str(jsonl(t / "bad.yaml", ["a: [1"]))], "bad.yaml: not valid YAML"),
    ("config top level a list", lambda t: ["generate", "--config", str(jsonl(t / "l.yaml", ["- 1"]))], "l.yaml: the top level"),
    ("unknown config key", lambda t: generate(t, "clips_per_capton=2"), "unknown key(s) clips_per_capton"),
    ("wrong type", lambda t: generate(t, "clips_per_caption=two"), "clips_per_caption: expected int"),
    ("override without =", lambda t: generate(t, "seed"), "override 'seed' is not of the form key=value"),
    ("bad shard", lambda t: generate(t, "--shard", "3/2"), "shard '3/2'"),
    ("unsafe generator name", lambda t: generate(t, "generator=../up"), "generator: '../up' is not a safe id"),
    ("input missing", lambda t: generate(t, f"input={t / 'gone.jsonl'}"), "gone.jsonl: manifest does not exist"),
    ("unknown backend", lambda t: generate(t, "backend=nope"), "unknown text-to-video backend 'nope'"),
    ("unsafe triplet id", lambda t: generate(t, manifest=jsonl(t / "m.jsonl", [{**GOOD_TRIPLET, "id": "../../x"}])),
     "m.jsonl:1: id: '../../x' is not a safe id"),
    ("duplicate triplet id", lambda t: generate(t, manifest=jsonl(t / "m.jsonl", [GOOD_TRIPLET, GOOD_TRIPLET])),
     "m.jsonl:2: id: 't0' is already on line 1"),
    ("invalid JSON line", lambda t: generate(t, manifest=jsonl(t / "m.jsonl", ['{"id": ', GOOD_TRIPLET])),
     "m.jsonl:1: (line): invalid JSON"),
    ("unknown field", lambda t: generate(t, manifest=jsonl(t / "m.jsonl", [{**GOOD_TRIPLET, "captoin": "x"}])),
     "m.jsonl:1: captoin: unknown field"),
    ("missing field", lambda t: generate(t, manifest=jsonl(t / "m.jsonl", [{k: v for k, v in GOOD_TRIPLET.items()
                                                                           if k != "negative"}])),
     "m.jsonl:1: negative: missing"),
    ("manifest not UTF-8", lambda t: generate(t, manifest=_latin1(t / "m.jsonl")), "m.jsonl:2: not UTF-8 text"),
    ("no triplets after filters", lambda t: generate(t, "splits=[test]"), "no triplets left"),
    ("CSV missing a column", lambda t: generate(t, manifest=csv_file(t / "v.csv", [LLM_HEADER[:-1], ["a"] * 5])),
     "v.csv:1: misalignment: missing column"),
    ("CSV video leaves the root", lambda t: generate(t, manifest=csv_file(t / "v.csv", [
        LLM_HEADER, ["msr-vtt", "../../etc/x.mp4", "a", "b", "train", "count"]])), "v.csv:2: videopath"),
    ("CSV unknown misalignment", lambda t: generate(t, manifest=csv_file(t / "v.csv", [
        LLM_HEADER, ["msr-vtt", "a.mp4", "a", "b", "train", "negation"]])), "v.csv:2: misalignment: 'negation'"),
    ("CSV not UTF-8", lambda t: generate(t, manifest=_latin1_csv(t / "v.csv")), "v.csv:2: not UTF-8 text"),
    ("import root missing", lambda t: ["generate", "--config", str(jsonl(t / "i.yaml", [
        f"backend: import\noutput_dir: {t / 'run'}\nsettings: {{root: {t / 'nowhere'}}}"]))], "settings.root"),
    # score
    ("no members", lambda t: score(t, "members=[]"), "members: the ensemble needs at least one member"),
    ("frames 0", lambda t: score(t, "frames=0"), "frames must be >= 1"),
    ("nothing generated yet", lambda t: score(t), "no done clips to score"),
    ("triplets path mistyped", lambda t: score(clips_run(t, {}), f"triplets={t / 'tripelts.jsonl'}"),
     "triplets: " + "{t}/tripelts.jsonl does not exist"),
    ("clip record invalid", lambda t: score(clips_run(t, {"status": "ok"})), "clips.jsonl:1: status: 'ok'"),
    # train
    ("no model", lambda t: train(t, "model.name_or_path="), "model.name_or_path: required"),
    ("NaN learning rate", lambda t: train(t, "optim.lr=.nan"), "optim.lr: must be a finite number > 0"),
    ("negative warmup", lambda t: train(t, "optim.warmup_steps=-1"), "optim.warmup_steps: must be >= 0"),
    ("unknown weighting", lambda t: train(t, "loss.weighting=best"), "loss.weighting: 'best' is not one of"),
    ("triplets missing", lambda t: train(t, f"data.triplets={t / 'no.jsonl'}"), "no.jsonl: manifest does not exist"),
    ("fresh run over checkpoints", make_run_with_checkpoint, "holds checkpoints of an earlier run"),
    ("weights with NaN", lambda t: train(t, f"data.clips={jsonl(t / 'c.jsonl', [])}", "loss.weighting=margin",
                                         f"data.weights={jsonl(t / 'w.jsonl', [_weight_nan()])}"),
     "w.jsonl:1: f_target: nan is not a finite number"),
    # evaluate
    ("annotations missing", lambda t: ["evaluate", "--benchmark", "atp-hard", "--annotations", str(t / "none"),
                                       "--from-predictions", str(t / "p.csv"), "--out", str(t / "o.json")],
     "eval-nextqa-atphard.csv: atp-hard needs this published file"),
    ("--adapter without --model", lambda t: evaluate(t, "--from-predictions", "p.csv", "--adapter", "a"),
     "--adapter needs --model"),
    ("--model without --video-root", lambda t: evaluate(t, "--model", "m"), "--model needs --video-root"),
    ("prediction not a number", lambda t: predictions(t, [["v/1.mp4", "statement 0", "high"]]),
     "p.csv:1: entailment: not a number"),
    ("prediction not finite", lambda t: predictions(t, [["v/1.mp4", "statement 0", "nan"]]),
     "p.csv:1: entailment: 'nan' is not a finite number"),
    ("short prediction row", lambda t: predictions(t, [["v/1.mp4", "statement 0"]]), "p.csv:1: expected videopath"),
    # report
    ("report of no directory", lambda t: ["report", str(t / "missing")], "missing: not a directory"),
    ("report of a corrupt manifest", lambda t: ["report", str(jsonl(t / "run" / "weights.jsonl", ["{", "{}"]).parent)],
     "weights.jsonl:1: (line): invalid JSON"),
]


def _latin1(path: Path) -> Path:
    path.write_bytes((json.dumps(GOOD_TRIPLET) + "\n" + json.dumps({**GOOD_TRIPLET, "id": "t1"})
                      .replace("a red square", "un carré rouge") + "\n").encode("latin-1"))
    return path


def _latin1_csv(path: Path) -> Path:
    path.write_bytes((",".join(LLM_HEADER) + "\nmsr-vtt,a.mp4,un carré,b,train,count\n").encode("latin-1"))
    return path


def _weight_nan() -> str:
    return ('{"clip_id": "g/t0_001", "triplet_id": "t0", "generator": "g", "misalignment": null, '
            '"f_target": NaN, "f_real": 0.5}')


def test_the_catalogue_has_at_least_30_cases():
    assert len(CATALOGUE) >= 30 and len({name for name, _, _ in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize("name, argv, expected", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_a_bad_input_gives_one_line_and_exit_2(name, argv, expected, tmp_path, capsys):
    args = argv(tmp_path)
    code = cli_main(args)
    out = capsys.readouterr()
    stage = args[0]
    lines = out.err.strip().splitlines()
    assert code == 2, (code, out.err[-2000:])
    assert "Traceback" not in out.err + out.out
    assert len(lines) == 1 and lines[0].startswith(f"synvita {stage}: "), out.err
    assert expected.format(t=tmp_path) in lines[0]
