"""The toy world's base models, trained from scratch and cached by a hash of their settings.

- `off_the_shelf(...)`: a tiny Video-LLaVA (synvita.tiny.lmms, size "toy") pretrained on real-style
  clips with captioning and entailment against *easy* negatives (another clip's caption). It has
  never seen a hard negative: that is what fine-tuning on VideoCon-style triplets adds.
- `vqa_members(...)`: tiny image VLMs of the LLaVA-1.5 and Qwen2-VL families trained on single frames
  to answer the VQAScore question, against easy negatives and against negatives that change what a
  frame shows (attribute, object, count, relation, hallucination). A frame cannot show order, so
  the members are blind to event-order flips, like their real counterparts. Each member's vision
  tower is first taught which shape each patch shows, then frozen (`_teach_shape`).

Both draw new scenes at every step (`_fresh_clips`) and spend half their examples on captioning.
The result is an ordinary checkpoint folder, loaded by path like a hub model. Training here is a
plain next-token loop on the answer and caption tokens: pretraining is not the SynViTA objective.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
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

from synvita.data.records import MISALIGNMENTS
from synvita.data.video import FrameSampler
from synvita.text.prompts import CAPTION_QUESTION
from synvita.toyworld.benchmarks import held_out, scenes
from synvita.toyworld.grammar import PHRASINGS, caption
from synvita.toyworld.negatives import negative
from synvita.toyworld.pool import side_by_side
from synvita.toyworld.render import REAL, Style, render, shape_patches
from synvita.toyworld.world import SHAPES, random_scene
from synvita.utils import atomic_folder

STATIC_KINDS = ("attribute", "object", "count", "relation", "hallucination")  # visible in one frame
PLAIN = Style("plain")  # members also see flat renderings, as image VLMs see clip art
# bump a kind's version when the training code changes what a cached model of that kind would be
VERSIONS = {"LmmSettings": 3, "MemberSettings": 5}


@dataclass(frozen=True)
class LmmSettings:
    kind: str = "video-llava"
    size: str = "toy"
    steps: int = 1500  # 1000 reached validation easy 79.7 on one run and 94.6 on another; 1500: 95.4
    batch: int = 8  # clips per step: each is captioned, half of them also enter entailment pairs
    lr: float = 1e-3
    frames: int = 8
    clip_size: int = 48
    seed: int = 0


@dataclass(frozen=True)
class MemberSettings:
    kinds: tuple[str, ...] = ("llava-1.5", "qwen2-vl-image")
    size: str = "toy"
    steps: int = 800
    batch: int = 16  # clips per step, as for LmmSettings
    lr: float = 1e-3  # 2e-3 learnt slower (validation easy 66 vs 79 at step 600)
    hard_share: float = 0.5  # of the clips: also drawn as a minimal pair with a frame-visible hard negative
    # steps teaching the visual encoder shape directly (`_teach_shape`), which then stays frozen; 0: none
    tower_steps: int = 1500
    tower_batch: int = 32  # frames per step
    frames: int = 8
    clip_size: int = 48
    seed: int = 0


def settings_key(settings) -> str:
    kind = type(settings).__name__
    blob = json.dumps({"version": VERSIONS[kind], "type": kind, **dataclasses.asdict(settings)}, sort_keys=True)
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


def _fit(model, sample, steps: int, lr: float, seed: int, desc: str, probe=None, probe_every: int = 0,
         bar_line: int = 0) -> list[float]:
    """AdamW with warmup + cosine; loss = mean over examples of each one's mean answer-token NLL.
    `probe()` (held-out numbers) runs every `probe_every` steps and shows in the progress bar, drawn
    on line `bar_line` (tqdm's `position`)."""
    from transformers import get_cosine_schedule_with_warmup

    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = get_cosine_schedule_with_warmup(opt, max(1, steps // 10), steps)
    pad = model.config.get_text_config().pad_token_id or 0
    model.train()
    losses = []
    bar = tqdm(range(steps), desc=desc, leave=False, position=bar_line)
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
        if probe is not None and probe_every and len(losses) % probe_every == 0:
            model.eval()
            bar.write(f"{desc} step {len(losses)}: {json.dumps(probe())}")
            model.train()
    model.eval()
    return losses


def _save(model, processor, out: Path, info: dict) -> Path:
    """A killed build never leaves a half checkpoint (`atomic_folder`)."""
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "toyworld.json").write_text(json.dumps(info, indent=1))
    return out


def _fresh_clips(tag: str, frames: int, size: int, styles=(REAL,), pick=None):
    """Endless (scene, clip, redraw) triples of training-side scenes, a new scene at every draw.
    Trained on a fixed few hundred scenes, the base models memorised them and stayed at chance on
    held-out ones. `pick(i)`: the frames to render of the i-th clip (default all). `redraw(other)`
    renders another scene exactly as this clip was drawn (style, noise, frames): a minimal pair.
    """
    for i in itertools.count():
        s = random_scene(f"{tag}-{i}")
        if not held_out(s):  # neither validation nor test scenes
            redraw = functools.partial(render, style=styles[i % len(styles)], seed=i, frames=frames, size=size,
                                       pick=pick and pick(i))
            yield s, redraw(s), redraw


def _phrasing(rng: random.Random) -> str:
    return rng.choice(PHRASINGS) if rng.random() < 0.3 else "then"


def _spoken(s, rng: random.Random) -> str:
    return caption(s, _phrasing(rng))


def _describe(head: list[int], tok, text: str, visual: dict, token_types=None) -> _Example:
    """Captioning: the loss is on the caption after the prompt `head`. It grounds every word of a
    caption in the pixels, a far denser signal than one Yes/No per clip: without it (or with it on
    a quarter of the examples) the LMM did not learn to match captions to clips at all."""
    body = tok(" " + text, add_special_tokens=False).input_ids + [tok.eos_token_id]
    ids = head + body
    return _Example(ids, [-100] * len(head) + body, visual, token_types and token_types + [0] * len(body))


def _entailment_pairs(batch: int) -> list[tuple[int, int]]:
    """Clip pairs (0, 1), (2, 3), ... over the first half of a step's clips. Each clip of a pair is
    asked with both captions, so that neither the clip nor the caption alone tells the answer."""
    return [(a, a + 1) for a in range(0, batch // 2 - 1, 2)]


def _answer(ids: list[int], answer: int, visual: dict, token_types=None) -> _Example:
    return _Example(ids + [answer], [-100] * len(ids) + [answer], visual, token_types and token_types + [0])


def _lmm_path(settings: LmmSettings, cache) -> Path:
    return cache_root(cache) / f"{settings.kind}-{settings_key(settings)}"


def _member_paths(settings: MemberSettings, cache) -> dict[str, Path]:
    # each member trains alone (its own seed and scene stream), so each is keyed without the others
    return {_member_name(k): cache_root(cache) / f"member-{k}-{settings_key(dataclasses.replace(settings, kinds=(k,)))}"
            for k in settings.kinds}


def _built(path: Path) -> bool:
    return (path / "toyworld.json").is_file()


def _without_library_bars(build, *args):
    """`build(*args)` without transformers' own saving and loading bars, which would draw over the
    models' bars (each job runs in a process of its own, so nothing else loses them)."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    return build(*args)


def base_models(lmm: LmmSettings, members: MemberSettings, cache: str | Path | None = None):
    """(off-the-shelf LMM folder, {member kind: folder}). What is not cached yet is built side by
    side (`pool.side_by_side`), each model in its own process even beyond the cores: with one
    process per core, the LMM's core sat idle for the last 5 minutes of the two members (1,025 s
    in all), against 940 s for three processes sharing two cores on the same machine. Now the
    three finish within 90 s of each other (829 s in all): the cores are evenly loaded."""
    paths = _member_paths(members, cache)
    todo = [] if _built(_lmm_path(lmm, cache)) else [(off_the_shelf, lmm)]
    todo += [(vqa_members, dataclasses.replace(members, kinds=(k,))) for k in members.kinds
             if not _built(paths[_member_name(k)])]
    # each model's progress bar on its own line, instead of three processes redrawing one
    side_by_side([(_without_library_bars, build, settings, cache, 0, line)
                  for line, (build, settings) in enumerate(todo)], processes=len(todo))
    return off_the_shelf(lmm, cache), vqa_members(members, cache)


def _lmm_check(scorer, settings: LmmSettings) -> dict:
    return heldout_aucs(scorer.score_many, settings.frames, settings.clip_size, MISALIGNMENTS)


def off_the_shelf(settings: LmmSettings = LmmSettings(), cache: str | Path | None = None,
                  probe_every: int = 0, bar_line: int = 0) -> Path:
    """The pretrained tiny video LMM (built and cached on first use); `probe_every` N steps, the
    held-out checks are printed. The progress bar is drawn on line `bar_line`."""
    out = _lmm_path(settings, cache)
    if _built(out):
        return out
    from synvita.models.alignment import AlignmentScorer
    from synvita.models.families import load_video_lmm
    from synvita.tiny import build_tiny

    build_tiny(settings.kind, out.with_name(out.name + ".init"), seed=settings.seed, size=settings.size)
    lmm = load_video_lmm(str(out.with_name(out.name + ".init")))
    tok = lmm.tokenizer
    stream = _fresh_clips(f"pretrain-{settings.seed}", settings.frames, settings.clip_size)
    # The entailment prompt exactly as the scorer builds it (prefix with the video tokens + tail).
    scorer = AlignmentScorer(lmm)
    clip0 = render(random_scene(0), REAL, 0, settings.frames, settings.clip_size)
    prefix = scorer.encode([clip0])[0].prefix_ids.tolist()
    cap_pre, cap_suf = lmm.prompt_pieces(CAPTION_QUESTION)
    describe_head = (lmm.processor(text=[cap_pre], videos=[clip0], return_tensors="pt").input_ids[0].tolist()
                     + tok(cap_suf, add_special_tokens=False).input_ids)
    yes, no = _answer_id(tok, "Yes"), _answer_id(tok, "No")

    def sample(r: random.Random) -> list[_Example]:
        # clip pairs only: with static minimal pairs as well (half the clips, 1500 steps) the LMM
        # reached validation easy 73.9 instead of 95.4, and hard negatives are fine-tuning's job
        clips, texts, questions = _questions([next(stream) for _ in range(settings.batch)], r, hard_share=0.0)
        pixels = lmm.processor.video_processor(videos=clips, return_tensors="pt")["pixel_values_videos"]
        visual = [{"pixel_values_videos": p[None]} for p in pixels]
        asked = [text for _, text, _ in questions]
        split = scorer.pairs([], [0] * len(asked), asked)
        # Each prompt: the prefix tokens it keeps (all, unless its caption merges with them), then its tail.
        prompts = [prefix[:len(prefix) - d] + t for t, d in zip(split.tail_ids, split.dropped)]
        return ([_describe(describe_head, tok, t, v) for t, v in zip(texts, visual)]
                + [_answer(p, yes if answer else no, visual[i]) for p, (i, _, answer) in zip(prompts, questions)])

    losses = _fit(lmm.model, sample, settings.steps, settings.lr, settings.seed, "toy LMM: pretraining",
                  lambda: _lmm_check(scorer, settings), probe_every, bar_line)
    shutil.rmtree(out.with_name(out.name + ".init"))
    return _save(lmm.model, lmm.processor, out, {"settings": dataclasses.asdict(settings),
                                                 "final_loss": float(np.mean(losses[-50:])),
                                                 "heldout": _lmm_check(scorer, settings)})


def heldout_aucs(score, frames: int, clip_size: int, kinds=(), n: int = 48) -> dict:
    """Validation-split AUCs (in points) of `score(clip, texts)`, an array (items, len(texts)): one
    row per clip for the LMM, one per scored frame for a member (per-frame AUC). "easy": the clip's
    own caption against another clip's caption (the task pretraining teaches: about 50 if nothing was
    learnt); each of `kinds`: own caption against its hard negative of that kind; "hard": the kinds pooled."""
    from synvita.evaluation.metrics import roc_auc

    check = scenes("pretrain-check", n, "val")
    pos, neg = {}, {}
    for i, s in enumerate(check):
        hard = {k: negative(s, k, random.Random(f"check-{i}-{k}")) for k in kinds}
        hard = {k: v for k, v in hard.items() if v is not None}
        texts = [caption(s), caption(check[(i + 1) % n]), *map(caption, hard.values())]
        f = np.asarray(score(render(s, REAL, i, frames, clip_size), texts), dtype=float).reshape(-1, len(texts))
        for name, col in [("easy", 1), *((k, 2 + j) for j, k in enumerate(hard))]:
            for group in {name, "hard" if name != "easy" else name}:
                pos.setdefault(group, []).extend(f[:, 0])
                neg.setdefault(group, []).extend(f[:, col])
    return {g: round(roc_auc([1] * len(pos[g]) + [0] * len(neg[g]), [*pos[g], *neg[g]]), 1) for g in pos}


def _questions(drawn: list, rng: random.Random, hard_share: float):
    """A training step from `drawn` (scene, clip, redraw) triples: (clips, their captions, questions),
    a question being (clip index, caption, answer is Yes).

    Clip pairs (`_entailment_pairs`), and minimal pairs: with probability `hard_share` a clip's
    frame-visible hard negative scene (`STATIC_KINDS`) is drawn the same way (`redraw`) and both clips are asked
    both captions, in one phrasing. Every caption is then a Yes as often as a No, so neither the
    caption nor the picture alone tells the answer: only grounding the one difference does. With
    hard captions only ever a No, the members learnt the wording of negatives instead.
    """
    clips = [clip for _, clip, _ in drawn]
    texts = [_spoken(s, rng) for s, _, _ in drawn]
    questions = []
    for a, b in _entailment_pairs(len(drawn)):
        questions += [(a, texts[a], True), (a, texts[b], False), (b, texts[b], True), (b, texts[a], False)]
    for i, (s, _, redraw) in enumerate(drawn if hard_share else ()):  # no draws from rng without them
        hard = [n for k in STATIC_KINDS if (n := negative(s, k, rng)) is not None]
        if hard and rng.random() < hard_share:
            n, phrasing = rng.choice(hard), _phrasing(rng)
            own, other, j = caption(s, phrasing), caption(n, phrasing), len(clips)
            clips.append(redraw(n))
            texts.append(_spoken(n, rng))
            questions += [(i, own, True), (i, other, False), (j, other, True), (j, own, False)]
    return clips, texts, questions


# each model's projector onto its language model: it stays trainable after `_teach_shape`, as in
# LLaVA's instruction tuning, where the vision tower alone is frozen
PROJECTORS = {"llava-1.5": "model.multi_modal_projector.", "qwen2-vl-image": "model.visual.merger."}


def _image_tokens(model, image_processor):
    """frames -> (frames, tokens, width): the visual tokens an image VLM's language model reads."""
    def encode(frames: list[np.ndarray]) -> torch.Tensor:
        pixels = image_processor(images=frames, return_tensors="pt")
        return torch.stack(list(model.model.get_image_features(**pixels).pooler_output))
    return encode


def _teach_shape(model, encode, settings, kind: str, picks, styles, bar_line: int = 0) -> float | None:
    """Teach a model's visual encoder which shape each of its visual tokens shows
    (`render.shape_patches`), with a linear head thrown away afterwards, then freeze it but for
    its projector (`PROJECTORS`). `encode(frames)`: the (frames, tokens, width) visual tokens the
    language model reads, a square grid per frame. Captions and Yes/No answers alone never taught
    a member shape, while a tower taught shape directly and frozen let it learn (README, "Where
    perception fails"). `settings`: `tower_steps` (none: returns None), `tower_batch` frames per
    step, `lr`, `seed`, `frames`, `clip_size`; the progress bar is drawn on line `bar_line`.
    Returns the shape accuracy on the tokens that show a shape, over the last 50 steps."""
    from transformers import get_cosine_schedule_with_warmup

    if not settings.tower_steps:
        return None

    def frames(rng: random.Random):  # (frame, per-token targets) of new training-side scenes
        for i in itertools.count():
            s = random_scene(f"shape-{settings.seed}-{i}")
            if not held_out(s):
                f = rng.choice(picks)
                yield (render(s, styles[i % len(styles)], i, settings.frames, settings.clip_size, pick=[f])[0],
                       shape_patches(s, i, settings.frames, f, settings.clip_size, grid))

    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    probe = encode([render(random_scene(0), REAL, 0, settings.frames, settings.clip_size)[0]])
    grid = int(round(probe.shape[1] ** 0.5))
    if grid * grid != probe.shape[1]:
        raise ValueError(f"{probe.shape[1]} visual tokens per frame do not form a square grid")
    stream = frames(rng)
    head = torch.nn.Linear(probe.shape[-1], 1 + len(SHAPES))
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=settings.lr, weight_decay=0.01)
    sched = get_cosine_schedule_with_warmup(opt, max(1, settings.tower_steps // 10), settings.tower_steps)
    # most tokens show no shape: without down-weighting them the head learnt to answer "none"
    weight = torch.tensor([0.1] + [1.0] * len(SHAPES))
    encoder, hits = None, []
    model.train()
    for _ in tqdm(range(settings.tower_steps), desc=f"member {kind}: teaching the tower shape", leave=False,
                  position=bar_line):
        batch = [next(stream) for _ in range(settings.tower_batch)]
        target = torch.tensor(np.stack([t for _, t in batch]))
        logits = head(encode([f for f, _ in batch]))
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), weight=weight).backward()
        encoder = encoder or [p for n, p in model.named_parameters()
                              if p.grad is not None and not n.startswith(PROJECTORS[kind])]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        shown = target > 0
        hits.append(((logits.argmax(-1) == target) & shown).sum().item() / max(1, shown.sum().item()))
    for p in encoder:
        p.requires_grad_(False)
    return round(float(np.mean(hits[-50:])), 3)


def _member_name(kind: str) -> str:
    return {"qwen2-vl-image": "qwen2-vl"}.get(kind, kind)  # builder name -> MEMBERS kind


def vqa_members(settings: MemberSettings = MemberSettings(), cache: str | Path | None = None,
                probe_every: int = 0, bar_line: int = 0) -> dict[str, Path]:
    """{member kind: checkpoint folder} of the trained tiny image VLMs (built and cached on first use);
    `probe_every` and `bar_line` as for `off_the_shelf`."""
    paths = _member_paths(settings, cache)
    todo = [k for k in settings.kinds if not _built(paths[_member_name(k)])]
    if not todo:
        return paths
    from synvita.scoring.members import MEMBERS, HFMember
    from synvita.tiny.members import TINY_MEMBERS

    picks = FrameSampler("uniform", 4).indices(np.arange(settings.frames), settings.frames)  # as scoring samples
    frame0 = render(random_scene(0), REAL, 0, settings.frames, settings.clip_size)[0]
    for kind in todo:
        out = paths[_member_name(kind)]
        init = out.with_name(out.name + ".init")
        TINY_MEMBERS[kind](init, settings.seed, settings.size)
        member = MEMBERS.get(_member_name(kind)).load(kind, str(init))
        proc, tok = member.processor, member.processor.tokenizer
        qwen = "image_grid_thw" in proc.image_processor(images=[frame0], return_tensors="pt")
        image_id = tok.convert_tokens_to_ids(tok.image_token)

        ask_pre, ask_post = member.prompt("\x00").split("\x00")
        ask = proc(images=[frame0], text=[ask_pre], return_tensors="pt").input_ids[0].tolist()
        tell_pre, tell_post = HFMember(kind, member.model, proc, template=CAPTION_QUESTION.replace("video", "image")
                                       ).prompt("\x00").split("\x00")
        tell = (proc(images=[frame0], text=[tell_pre], return_tensors="pt").input_ids[0].tolist()
                + tok(tell_post, add_special_tokens=False).input_ids)
        yes, no = _answer_id(tok, "Yes"), _answer_id(tok, "No")
        styles = (REAL, REAL, PLAIN)
        shape_accuracy = _teach_shape(member.model, _image_tokens(member.model, proc.image_processor), settings,
                                      kind, list(picks), styles, bar_line)
        frame_rng = random.Random(settings.seed)
        stream = _fresh_clips(f"members-{settings.seed}", settings.frames, settings.clip_size,
                              styles=styles, pick=lambda i: [frame_rng.choice(list(picks))])

        def types(ids: list[int]) -> list[int] | None:
            return [int(t == image_id) for t in ids] if qwen else None

        def visuals(frames: list[np.ndarray]) -> list[dict]:
            px = proc.image_processor(images=frames, return_tensors="pt")
            if not qwen:
                return [{"pixel_values": px["pixel_values"][i:i + 1]} for i in range(len(frames))]
            ends = np.cumsum([0] + [int(g.prod()) for g in px["image_grid_thw"]])  # patches of all frames in one tensor
            return [{"pixel_values": px["pixel_values"][ends[i]:ends[i + 1]],
                     "image_grid_thw": px["image_grid_thw"][i:i + 1]} for i in range(len(frames))]

        def asked(text: str, answer: int, v: dict) -> _Example:
            ids = ask + tok(text + ask_post, add_special_tokens=False).input_ids
            return _answer(ids, answer, v, types(ids))

        def sample(r: random.Random) -> list[_Example]:
            clips, texts, questions = _questions([next(stream) for _ in range(settings.batch)], r,
                                                 settings.hard_share)
            visual = visuals([c[0] for c in clips])
            return ([_describe(tell, tok, t, v, types(tell)) for t, v in zip(texts, visual)]
                    + [asked(text, yes if answer else no, visual[i]) for i, text, answer in questions])

        def check() -> dict:  # per frame, on the frames scoring looks at
            return heldout_aucs(lambda clip, texts: member.p_yes([clip[f] for f in picks], texts),
                                settings.frames, settings.clip_size, STATIC_KINDS)

        losses = _fit(member.model, sample, settings.steps, settings.lr, settings.seed, f"member {kind}: training",
                      check, probe_every, bar_line)
        shutil.rmtree(init)
        _save(member.model, proc, out, {"settings": dataclasses.asdict(dataclasses.replace(settings, kinds=(kind,))),
                                        "kind": kind, "tower_shape_accuracy": shape_accuracy,
                                        "final_loss": float(np.mean(losses[-50:])), "heldout": check()})
    return paths
