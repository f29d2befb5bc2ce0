"""A micro-batch of triplets -> the (log P(Yes), log P(No)) of each view the objective needs.

The vision tower runs once per video: the real and the synthetic video of a triplet are encoded
once each and serve their three captions (t^r, t^s, and t' = t^r with the words outside the LCS of
t^r and t^s hidden by the attention mask). All views of a micro-batch go through the LLM in one
`answer_logprobs` call, which also shares each video's prompt prefix across its captions.
Triplets without a usable synthetic clip get zero log-probabilities (constants) in the synthetic
views; their w = 0 removes them from the objective.
"""

from __future__ import annotations

import numpy as np
import torch

from synvita.data.video import Clip
from synvita.models.alignment import answer_gap
from synvita.models.features import FeatureCache, encode_cached
from synvita.text.lcs import shared_spans
from synvita.text.prompts import EXPLAIN_QUESTION
from synvita.training.data import Example
from synvita.training.losses import Explanations

REAL_VIEWS = ("rr", "rs", "rp")
# The label each entailment view is trained to answer (t' views have none).
ANSWERS = {"rr": "Yes", "rs": "No", "ss": "Yes", "sr": "No"}
SYN_VIEWS = ("ss", "sr", "sp")


class TripletScorer:
    def __init__(self, scorer, feature_cache: FeatureCache | None = None):
        self.scorer = scorer
        self.feature_cache = feature_cache

    def __call__(self, examples: list[Example], real: list[Clip | np.ndarray | None],
                 syn: list[Clip | np.ndarray | None], *, use_syn: bool, use_scr: bool, eos: bool = False
                 ) -> tuple[dict, dict | None, torch.Tensor, torch.Tensor]:
        """(views, eos, w, has_clip) for the objective: views maps a view name to (log P(Yes), log P(No));
        with `eos`, the answer views also carry their label token and eos maps them to
        log P(end of sequence | prompt, label), else eos is None. `real[i]` / `syn[i]` are the frames
        of example i's video / synthetic clip, None where the feature cache holds them (or it has no clip)."""
        device = self.scorer.lmm.device
        synthetic = use_syn or use_scr
        syn_rows = [i for i, e in enumerate(examples) if e.clip_path is not None] if synthetic else []
        files = [e.video for e in examples] + [examples[i].clip_path for i in syn_rows]
        clips = [*real, *(syn[i] for i in syn_rows)]
        caches = encode_cached(self.scorer, self.feature_cache, files, clips.__getitem__)
        n_real = len(examples)

        wanted = [v for v in REAL_VIEWS if v != "rp" or use_scr]
        wanted_syn = [v for v in SYN_VIEWS if v != "sp" or use_scr]
        video_index, texts, spans, answers, slots = [], [], [], [], []
        for row, e in enumerate(examples):
            t = e.triplet
            shared = shared_spans(t.caption, t.negative) if use_scr else None
            view_text = {"rr": (t.caption, None), "rs": (t.negative, None), "rp": (t.caption, shared),
                         "ss": (t.negative, None), "sr": (t.caption, None), "sp": (t.caption, shared)}
            todo = [(name, row) for name in wanted]
            if row in syn_rows:
                todo += [(name, n_real + syn_rows.index(row)) for name in wanted_syn]
            for name, video in todo:
                video_index.append(video)
                texts.append(view_text[name][0])
                spans.append(view_text[name][1])
                answers.append(ANSWERS.get(name) if eos else None)
                slots.append((name, row))
        lp_yes, lp_no, lp_eos = self.scorer.answer_and_eos_logprobs(
            self.scorer.pairs(caches, video_index, texts, spans, answers))

        views, eos_views = {}, {} if eos else None
        for name in wanted + (wanted_syn if synthetic else []):
            picks = [k for k, (v, _) in enumerate(slots) if v == name]
            rows = torch.tensor([slots[k][1] for k in picks], device=device, dtype=torch.long)
            picks = torch.tensor(picks, device=device, dtype=torch.long)

            def by_row(lp):
                return torch.zeros(n_real, device=device, dtype=lp.dtype).index_put((rows,), lp[picks])

            views[name] = (by_row(lp_yes), by_row(lp_no))
            if eos and name in ANSWERS:
                eos_views[name] = by_row(lp_eos)
        has_clip = torch.tensor([e.clip_path is not None for e in examples], device=device, dtype=torch.float32)
        w = torch.tensor([e.w for e in examples], device=device, dtype=torch.float32) * has_clip
        return views, eos_views, w, has_clip


def explanation_nll(lmm, examples: list[Example], frames: list[Clip | np.ndarray]) -> Explanations:
    """VideoCon's explanation task: Σ token NLL of each triplet's `nle` (+ end of sequence) given
    (V^r, t^s), and its token count, each of shape (B,).

    Triplets without an `nle` get 0 tokens. This is ordinary teacher-forced language modelling through
    the model's own forward (its own video handling), so it costs one more vision pass per explained video.
    """
    device = lmm.device
    nll_sum = torch.zeros(len(examples), device=device)
    tokens = torch.zeros(len(examples), device=device)
    rows = [i for i, e in enumerate(examples) if e.triplet.nle]
    if not rows:
        return Explanations(nll_sum, tokens)
    before, after = lmm.prompt_pieces(EXPLAIN_QUESTION)
    gap = answer_gap(after)
    prompts = [before + examples[i].triplet.negative + after for i in rows]
    answers = [gap + examples[i].triplet.nle + (lmm.tokenizer.eos_token or "") for i in rows]
    videos = [frames[i] for i in rows]
    tok = lmm.tokenizer
    prompt_len = [len(tok(p, add_special_tokens=False).input_ids) for p in prompts]
    full_len = [len(tok(p + a, add_special_tokens=False).input_ids) for p, a in zip(prompts, answers)]
    side, tok.padding_side = tok.padding_side, "right"
    try:
        inputs = lmm.processor(text=[p + a for p, a in zip(prompts, answers)], **lmm.video_inputs(videos),
                               return_tensors="pt", padding=True).to(device)
    finally:
        tok.padding_side = side
    logits = lmm.model(**inputs).logits[:, :-1].float()
    targets = inputs["input_ids"][:, 1:]
    # Answer tokens are the last (full - prompt) real tokens of each row; the video placeholder's
    # expansion adds the same count to both lengths, so counting from the row's end is exact.
    ends = inputs["attention_mask"].sum(-1) - 1
    mask = torch.zeros_like(targets, dtype=torch.bool)
    for r, (p, f) in enumerate(zip(prompt_len, full_len)):
        mask[r, ends[r] - (f - p):ends[r]] = True
    # Only answer tokens are targets: a prompt's placeholder id may lie past the vocabulary (mPLUG-Owl).
    targets = targets.masked_fill(~mask, -100)
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none", ignore_index=-100)
    index = (torch.tensor(rows, device=device),)
    return Explanations(nll_sum.index_put(index, (nll * mask).sum(-1)), tokens.index_put(index, mask.sum(-1).float()))
