"""The toy world's base models, trained from scratch and cached by a hash of their settings.

- `off_the_shelf(...)`: a tiny Video-LLaVA (synvita.models.tiny, size "toy") pretrained on real-style
  clips with captioning and entailment against *easy* negatives (another clip's caption). It has
  never seen a hard negative: that is what fine-tuning on VideoCon-style triplets adds.
- `vqa_members(...)`: tiny image VLMs of the LLaVA-1.5 and Qwen2-VL families trained on single frames
  to answer the VQAScore question, against easy negatives and against negatives that change what a
  frame shows (attribute, object, count, relation, hallucination). A frame cannot show order, so
  the members are blind to event-order flips, like their real counterparts.

The result is an ordinary checkpoint folder, loaded by path like a hub model. Training here is a
plain next-token loop on the answer tokens: pretraining is not the SynViTA objective.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from synvita.toyworld.benchmarks import scenes
from synvita.toyworld.grammar import PHRASINGS, caption
from synvita.toyworld.negatives import negative
from synvita.toyworld.render import REAL, Style, render
from synvita.utils import atomic_write_text

CAPTION_QUESTION = "Describe the video.{text}"
STATIC_KINDS = ("attribute", "object", "count", "relation", "hallucination")  # visible in one frame
PLAIN = Style("plain")  # members also see flat renderings, as image VLMs see clip art
VERSION = 2  # bump when the training code changes what a cached model would be


@dataclass(frozen=True)
class LmmSettings:
    kind: str = "video-llava"
    size: str = "toy"
    scenes: int = 500
    steps: int = 500
    batch: int = 8
    lr: float = 1e-3
    frames: int = 8
    clip_size: int = 48
    seed: int = 0


@dataclass(frozen=True)
class MemberSettings:
    kinds: tuple[str, ...] = ("llava-1.5", "qwen2-vl-image")
    scenes: int = 400
    steps: int = 300
    batch: int = 16
    lr: float = 1e-3
    frames: int = 8
    clip_size: int = 48
    seed: int = 0


def settings_key(settings) -> str:
    blob = json.dumps({"version": VERSION, "type": type(settings).__name__, **dataclasses.asdict(settings)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cache_root(cache: str | Path | None = None) -> Path:
    return Path(cache or os.environ.get("SYNVITA_CACHE", "~/.cache/synvita")).expanduser() / "toy"


@dataclass
class _Example:
    ids: list[int]
    labels: list[int]  # -100 where no loss
    visual: dict  # processor tensors of this example's video or frame
    token_types: list[int] | None = None  # Qwen2-VL's mm_token_type_ids (1 = image token), for M-RoPE


def _answer_id(tokenizer, word: str) -> int:
    ids = tokenizer(" " + word, add_special_tokens=False).input_ids
    return ids[0] if len(ids) == 1 else tokenizer(word, add_special_tokens=False).input_ids[0]


def _fit(model, sample, steps: int, lr: float, seed: int, desc: str) -> list[float]:
    """AdamW with warmup + cosine; loss = mean over examples of each one's mean answer-token NLL."""
    from transformers import get_cosine_schedule_with_warmup

    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = get_cosine_schedule_with_warmup(opt, max(1, steps // 10), steps)
    pad = model.config.get_text_config().pad_token_id or 0
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=desc, leave=False)
    for _ in bar:
        batch = sample(rng)
        width = max(len(e.ids) for e in batch)
        ids = torch.tensor([e.ids + [pad] * (width - len(e.ids)) for e in batch])
        labels = torch.tensor([e.labels + [-100] * (width - len(e.labels)) for e in batch])
        mask = torch.tensor([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in batch])
        visual = {k: torch.cat([e.visual[k] for e in batch]) for k in batch[0].visual}
        if batch[0].token_types is not None:
            visual["mm_token_type_ids"] = torch.tensor([e.token_types + [0] * (width - len(e.ids)) for e in batch])
        logits = model(input_ids=ids, attention_mask=mask, **visual).logits[:, :-1]
        target = labels[:, 1:]
        nll = F.cross_entropy(logits.transpose(1, 2).float(), target, ignore_index=-100, reduction="none")
        loss = (nll.sum(1) / (target != -100).sum(1).clamp(min=1)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    model.eval()
    return losses


def _save(model, processor, out: Path, info: dict) -> Path:
    """Write to a temporary folder, then rename: a killed build never leaves a half checkpoint."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    atomic_write_text(tmp / "toyworld.json", json.dumps(info, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _clips(tag: str, n: int, frames: int, size: int, styles=(REAL,)):
    """(scene, clip) pairs of the training side of the split, each in one of `styles`."""
    out = []
    for i, s in enumerate(scenes(tag, n, test=False)):
        out.append((s, render(s, styles[i % len(styles)], i, frames, size)))
    return out


def off_the_shelf(settings: LmmSettings = LmmSettings(), cache: str | Path | None = None) -> Path:
    """The pretrained tiny video LMM (built and cached on first use)."""
    out = cache_root(cache) / f"{settings.kind}-{settings_key(settings)}"
    if (out / "toyworld.json").is_file():
        return out
    from synvita.models.alignment import AlignmentScorer
    from synvita.models.families import load_video_lmm
    from synvita.models.tiny import build_tiny

    build_tiny(settings.kind, out.with_name(out.name + ".init"), seed=settings.seed, size=settings.size)
    lmm = load_video_lmm(str(out.with_name(out.name + ".init")))
    tok = lmm.tokenizer
    data = _clips("pretrain", settings.scenes, settings.frames, settings.clip_size)
    rng = random.Random(settings.seed)
    texts = [caption(s, rng.choice(PHRASINGS) if rng.random() < 0.3 else "then") for s, _ in data]
    pixels = []
    for start in tqdm(range(0, len(data), 32), desc="toy LMM: video processor", leave=False):
        chunk = [clip for _, clip in data[start:start + 32]]
        pixels += list(lmm.processor.video_processor(videos=chunk, return_tensors="pt")["pixel_values_videos"])
    # The entailment prompt exactly as the scorer builds it (prefix with the video tokens + tail).
    scorer = AlignmentScorer(lmm)
    prefix = scorer.encode([data[0][1]])[0].prefix_ids.tolist()
    cap_pre, cap_suf = lmm.prompt_pieces(CAPTION_QUESTION)
    cap_prefix = lmm.processor(text=[cap_pre], videos=[data[0][1]], return_tensors="pt").input_ids[0].tolist()
    yes, no = _answer_id(tok, "Yes"), _answer_id(tok, "No")
    tail = {}

    def entail(i: int, text: str, answer: int) -> _Example:
        if text not in tail:
            tail[text] = scorer.pairs([], [0], [text]).tail_ids[0]
        ids = prefix + tail[text] + [answer]
        return _Example(ids, [-100] * (len(ids) - 1) + [answer], {"pixel_values_videos": pixels[i][None]})

    def describe(i: int) -> _Example:
        head = tok(cap_suf, add_special_tokens=False).input_ids
        body = tok(" " + texts[i], add_special_tokens=False).input_ids + [tok.eos_token_id]
        ids = cap_prefix + head + body
        return _Example(ids, [-100] * (len(ids) - len(body)) + body, {"pixel_values_videos": pixels[i][None]})

    def sample(r: random.Random) -> list[_Example]:
        out = []
        for j in range(settings.batch):
            i = r.randrange(len(data))
            if j % 4 == 3:
                out.append(describe(i))
            elif j % 2 == 0:
                out.append(entail(i, texts[i], yes))
            else:
                out.append(entail(i, texts[(i + r.randrange(1, len(data))) % len(data)], no))
        return out

    losses = _fit(lmm.model, sample, settings.steps, settings.lr, settings.seed, "toy LMM: pretraining")
    shutil.rmtree(out.with_name(out.name + ".init"))
    return _save(lmm.model, lmm.processor, out, {"settings": dataclasses.asdict(settings),
                                                 "final_loss": float(np.mean(losses[-50:])),
                                                 "heldout_easy_auc": heldout_easy_auc(AlignmentScorer(lmm), settings)})


def heldout_easy_auc(scorer, settings: LmmSettings, n: int = 48) -> float:
    """AUC of f at telling held-out clips' own captions from another held-out clip's caption: the
    task pretraining teaches, so a model that learnt nothing scores about 0.5."""
    from synvita.evaluation.metrics import roc_auc

    test = scenes("pretrain-check", n, test=True)
    f_own, f_other = [], []
    for i, s in enumerate(test):
        scores = scorer.score_many(render(s, REAL, i, settings.frames, settings.clip_size),
                                   [caption(s), caption(test[(i + 1) % n])])
        f_own.append(float(scores[0]))
        f_other.append(float(scores[1]))
    return roc_auc([1] * n + [0] * n, f_own + f_other)


def _member_name(kind: str) -> str:
    return {"qwen2-vl-image": "qwen2-vl"}.get(kind, kind)  # builder name -> MEMBERS kind


def vqa_members(settings: MemberSettings = MemberSettings(), cache: str | Path | None = None) -> dict[str, Path]:
    """{member kind: checkpoint folder} of the trained tiny image VLMs (built and cached on first use)."""
    root = cache_root(cache)
    key = settings_key(settings)
    paths = {_member_name(k): root / f"member-{k}-{key}" for k in settings.kinds}
    todo = [k for k in settings.kinds if not (paths[_member_name(k)] / "toyworld.json").is_file()]
    if not todo:
        return paths
    from synvita.scoring.members import MEMBERS
    from synvita.scoring.tiny_members import TINY_MEMBERS

    data = _clips("members", settings.scenes, settings.frames, settings.clip_size, styles=(REAL, REAL, PLAIN))
    rng = random.Random(settings.seed)
    texts = [caption(s) for s, _ in data]
    hard = [[caption(n) for k in STATIC_KINDS if (n := negative(s, k, rng)) is not None] for s, _ in data]
    for kind in todo:
        out = paths[_member_name(kind)]
        init = out.with_name(out.name + ".init")
        TINY_MEMBERS[kind](init, settings.seed)
        member = MEMBERS.get(_member_name(kind)).load(kind, str(init))
        proc, tok = member.processor, member.processor.tokenizer
        pre, post = member.prompt("\x00").split("\x00")
        frame0 = data[0][1][0]
        prefix = proc(images=[frame0], text=[pre], return_tensors="pt").input_ids[0].tolist()
        visual = []  # per clip: processor tensors of 4 frames spread over the clip, as scoring samples
        picks = np.linspace(0, settings.frames - 1, 4).round().astype(int)
        for _, clip in tqdm(data, desc=f"member {kind}: image processor", leave=False):
            px = proc.image_processor(images=[clip[f] for f in picks], return_tensors="pt")
            visual.append(px)
        yes, no = _answer_id(tok, "Yes"), _answer_id(tok, "No")
        image_id = tok.convert_tokens_to_ids(tok.image_token)

        def one(i: int, f: int, text: str, answer: int) -> _Example:
            ids = prefix + tok(text + post, add_special_tokens=False).input_ids + [answer]
            px = visual[i]
            if "image_grid_thw" in px:  # Qwen2-VL: patches of all frames in one tensor, split by grid
                sizes = [int(g.prod()) for g in px["image_grid_thw"]]
                start = sum(sizes[:f])
                vis = {"pixel_values": px["pixel_values"][start:start + sizes[f]],
                       "image_grid_thw": px["image_grid_thw"][f:f + 1]}
            else:
                vis = {"pixel_values": px["pixel_values"][f:f + 1]}
            types = [int(t == image_id) for t in ids] if "image_grid_thw" in px else None
            return _Example(ids, [-100] * (len(ids) - 1) + [answer], vis, types)

        def sample(r: random.Random) -> list[_Example]:
            out_ = []
            for j in range(settings.batch):
                i, f = r.randrange(len(data)), r.randrange(len(picks))
                if j % 2 == 0:
                    out_.append(one(i, f, texts[i], yes))
                elif j % 4 == 1 and hard[i]:
                    out_.append(one(i, f, r.choice(hard[i]), no))
                else:
                    out_.append(one(i, f, texts[(i + r.randrange(1, len(data))) % len(data)], no))
            return out_

        losses = _fit(member.model, sample, settings.steps, settings.lr, settings.seed, f"member {kind}: training")
        shutil.rmtree(init)
        _save(member.model, proc, out, {"settings": dataclasses.asdict(settings), "kind": kind,
                                        "final_loss": float(np.mean(losses[-50:]))})
    return paths
