"""The alignment score f(V,t) = P(Yes) / (P(Yes) + P(No)) of a video LMM, batched and differentiable.

How a pair is laid out: the family's chat prompt is split at the caption into a *prefix* (system
text, the video's tokens, the question up to the opening quote) and the caption plus the closing
text. The prefix is the same for every caption of a video, so
- the vision tower runs once per video (`encode`) and its features are scattered into the LLM's
  input embeddings of every pair of that video;
- with prefix sharing (the default) the LLM also runs once over the prefix, and all captions of the
  video are scored from its cached keys/values, batched.
Positions are passed explicitly (1-D, or Qwen2-VL's 3-D multimodal RoPE from the model's own
`get_rope_index`), and the answer is read at each row's last real token, so left or right padding,
batch composition and prefix sharing give the same f up to float rounding.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from os import PathLike
from typing import Sequence

import numpy as np
import torch
from synvita.data.video import Clip, FrameSampler, read_clip
from synvita.errors import SynvitaError
from synvita.models.families import VideoLMM
from synvita.models.prefix import SharedPrefix, positions_after, sees_prefix
from synvita.text.lcs import caption_keep_token_mask
from synvita.text.prompts import ENTAIL_QUESTION

log = logging.getLogger(__name__)

def answer_gap(prompt: str) -> str:
    """What separates a prompt from the answer the model writes: nothing after a space or newline."""
    return "" if prompt.endswith((" ", "\n")) else " "

Span = tuple[int, int]
Video = np.ndarray | Clip | str | PathLike


class VideoTokenMismatchError(SynvitaError):
    """The prompt's video tokens and the vision tower's features disagree in number."""


@dataclass
class VisionCache:
    """One video, ready for any number of captions: its prompt prefix and projected features."""

    prefix_ids: torch.Tensor  # (P,) prompt up to the caption, video placeholder expanded
    positions: torch.Tensor  # (P,) or (3, P) rotary positions of the prefix
    features: torch.Tensor  # (N, D) projected video features, one per video token of the prefix
    num_frames: int

    def positions_after(self, seen: int, length: int) -> torch.Tensor:
        """Positions of `length` tokens that follow the first `seen` prefix tokens: the prefix ends
        with text, so they count on from the last seen position (also under M-RoPE)."""
        return positions_after(self.positions[..., seen - 1], length)


@dataclass
class PairBatch:
    """(video, caption) pairs: `video_index[i]` picks the VisionCache of pair i."""

    caches: list[VisionCache]
    video_index: list[int]
    tail_ids: list[list[int]]  # caption + closing template tokens (+ the label answer token, if given)
    tail_mask: list[list[int]]  # 1 = visible; caption tokens outside the kept spans are 0
    # How many of the prefix's last tokens a pair does not see: the full prompt's tokenization merged
    # them with the caption's start (a caption opening with a quote), so its tail spells them anew.
    dropped: list[int]
    # True where the tail ends with a label answer token: the answer is then read one position
    # earlier, and the last position gives P(end of sequence | prompt, answer).
    has_answer: list[bool]

    def __len__(self) -> int:
        return len(self.video_index)

    def seen(self, i: int) -> int:
        """Prefix tokens that pair i sees."""
        return len(self.caches[self.video_index[i]].prefix_ids) - self.dropped[i]


class CaptionSplitter:
    """A caption's tokens after the prompt prefix it shares with every other caption of a video.

    The whole prompt is tokenized at once, as the processor does, and cut where its tokens stop
    agreeing with the prefix's: a caption is never tokenized on its own, whose first token a
    tokenizer may spell differently (Llama's Metaspace prepends "▁"; a leading quote merges with
    the prompt's opening quote). Needs the tokenizer and prompt only, not the model weights.
    """

    def __init__(self, lmm: VideoLMM, question: str = ENTAIL_QUESTION):
        self.tokenizer, self.video_token = lmm.tokenizer, lmm.video_token
        self.prefix_text, self.suffix_text = lmm.prompt_pieces(question)
        self.prefix_tokens = self._tokenize(self.prefix_text).input_ids
        # The tail of a caption must not reach back into the video's tokens.
        self._after_video = len(self.prefix_tokens) - self.prefix_tokens[::-1].index(lmm.video_token_id)

    def _tokenize(self, text: str, offsets: bool = False):
        return self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=offsets)

    def answer_token(self, word: str, readout_ids: list[int]) -> int:
        """The token a training label `word` is written with after the prompt (one of the readout ids).

        A prompt ending in a space that SentencePiece keeps as its own "▁" (mPLUG-Owl's "AI: ") merges
        it into the answer ("▁Yes"): that merged token is the label, written after the prompt as scored.
        """
        before = self._tokenize(self.suffix_text).input_ids
        after = self._tokenize(self.suffix_text + answer_gap(self.suffix_text) + word).input_ids
        common = next((i for i, (a, b) in enumerate(zip(before, after)) if a != b), min(len(before), len(after)))
        token = after[common] if common < len(after) else None
        if token not in readout_ids:
            raise ValueError(f"the answer {word!r} after the prompt {self.suffix_text!r} is token {token}, which is "
                             f"not one of the {word} ids {readout_ids} the score reads")
        return token

    def __call__(self, caption: str, keep_spans: Sequence[Span] | None = None) -> tuple[list[int], list[int], int]:
        """Token ids after the shared prefix (caption + closing text), their attention mask (caption
        tokens outside `keep_spans` are 0), and how many of the prefix's last tokens they replace."""
        if self.video_token in caption:
            raise ValueError(f"caption {caption!r} contains the video placeholder {self.video_token!r}")
        enc = self._tokenize(self.prefix_text + caption + self.suffix_text, offsets=True)
        shared = 0
        for a, b in zip(enc.input_ids, self.prefix_tokens):
            if a != b:
                break
            shared += 1
        if shared < self._after_video:
            raise ValueError(f"caption {caption!r} changes how the prompt before it tokenizes, up to the video")
        ids = enc.input_ids[shared:]
        dropped = len(self.prefix_tokens) - shared
        if keep_spans is None:
            return ids, [1] * len(ids), dropped
        keep = caption_keep_token_mask(enc.offset_mapping[shared:], len(self.prefix_text),
                                       len(self.prefix_text) + len(caption), keep_spans)
        return ids, [int(k) for k in keep], dropped


class AlignmentScorer:
    """Scores (video, caption) pairs with one video LMM; see the module docstring for the layout."""

    def __init__(self, lmm: VideoLMM, sampler: FrameSampler = FrameSampler(), batch_size: int = 16,
                 question: str = ENTAIL_QUESTION, prefix_sharing: bool = True, padding_side: str = "right",
                 videos_per_pass: int = 1):
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
        if videos_per_pass < 1:
            raise ValueError(f"videos_per_pass must be >= 1, not {videos_per_pass}")
        self.lmm, self.sampler, self.batch_size = lmm, sampler, batch_size
        self.videos_per_pass = videos_per_pass
        self.prefix_sharing, self.padding_side = prefix_sharing, padding_side
        self._told_checkpointing = False
        self.split = CaptionSplitter(lmm, question)
        self.prefix_text, self.suffix_text = self.split.prefix_text, self.split.suffix_text
        model = lmm.hf_model
        self._embed = model.get_input_embeddings()
        self._head = model.get_output_embeddings()
        self._feature_args = set(inspect.signature(lmm.multimodal_model.get_video_features).parameters)
        self._yes = torch.tensor(lmm.yes_ids, device=lmm.device)
        self._no = torch.tensor(lmm.no_ids, device=lmm.device)
        self._answer_ids = {word: self.split.answer_token(word, ids) for word, ids in (("Yes", lmm.yes_ids),
                                                                                        ("No", lmm.no_ids))}

    # -- videos -----------------------------------------------------------------------------------
    def _frames(self, video: Video) -> np.ndarray | Clip:
        return video if isinstance(video, (np.ndarray, Clip)) else read_clip(video, self.sampler)

    @torch.no_grad()
    def encode(self, videos: Sequence[Video]) -> list[VisionCache]:
        """Run the processor and the (frozen) vision tower once per video.

        A `Clip` (or a path, read as one) carries its frame rate to the processor; bare frame arrays
        get the processor's default rate, which time-aware positions (Qwen2.5-VL) then use.
        """
        caches: list[VisionCache | None] = [None] * len(videos)
        for start in range(0, len(videos), self.batch_size):
            clips = {start + j: self._frames(v) for j, v in enumerate(videos[start:start + self.batch_size])}
            # Processors stack a batch's frames, so clips of different lengths go in separate batches.
            by_length: dict[int, list[int]] = {}
            for i, clip in clips.items():
                by_length.setdefault(len(clip), []).append(i)
            for group in by_length.values():
                for i, cache in zip(group, self._encode_batch([clips[i] for i in group])):
                    caches[i] = cache
        return caches

    def _encode_batch(self, frames: list[np.ndarray | Clip]) -> list[VisionCache]:
        lmm = self.lmm
        inputs = lmm.processor(text=[self.prefix_text] * len(frames), **lmm.video_inputs(frames), return_tensors="pt",
                               padding=True).to(lmm.device)
        pixels = {k: v for k, v in inputs.items() if k in self._feature_args}
        pixels["pixel_values_videos"] = pixels["pixel_values_videos"].to(self._embed.weight.dtype)
        pooled = lmm.multimodal_model.get_video_features(**pixels).pooler_output
        width = self._embed.embedding_dim
        per_video = ([p.reshape(-1, width) for p in pooled] if isinstance(pooled, (list, tuple))
                     else list(pooled.reshape(len(frames), -1, width)))
        positions = self._prefix_positions(inputs)
        caches = []
        for row, (clip, features) in enumerate(zip(frames, per_video)):
            keep = inputs["attention_mask"][row].bool()
            ids = inputs["input_ids"][row][keep]
            self._check_video_tokens(ids, features, len(clip))
            caches.append(VisionCache(prefix_ids=ids, positions=positions[..., row, :][..., keep],
                                      features=features, num_frames=len(clip)))
        return caches

    def _prefix_positions(self, inputs) -> torch.Tensor:
        """(B, P) or (3, B, P) positions of the padded prefix batch (padding slots are arbitrary)."""
        mask = inputs["attention_mask"]
        if not self.lmm.family.mrope:
            return (mask.long().cumsum(-1) - 1).clamp(min=0)
        extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "pixel_values_videos")}
        positions, _ = self.lmm.multimodal_model.get_rope_index(inputs["input_ids"], attention_mask=mask, **extra)
        return positions

    def _check_video_tokens(self, ids: torch.Tensor, features: torch.Tensor, frames: int) -> None:
        tokens = int((ids == self.lmm.video_token_id).sum())
        if tokens != features.shape[0]:
            raise VideoTokenMismatchError(
                f"{self.lmm.source} ({self.lmm.family.name}): the prompt holds {tokens} video tokens but the "
                f"vision tower returned {features.shape[0]} feature vectors for this {frames}-frame clip. "
                "The processor and the model disagree on tokens per frame or on the number of frames: sample "
                "the number of frames the checkpoint was trained with (FrameSampler(num_frames=...), "
                "`--frames`), and make the processor's patch_size / vision_feature_select_strategy / "
                "num_additional_image_tokens match the model config (processor_config.json vs config.json).")

    # -- captions ---------------------------------------------------------------------------------
    def pairs(self, caches: list[VisionCache], video_index: Sequence[int], texts: Sequence[str],
              keep_spans: Sequence[Sequence[Span] | None] | None = None,
              answers: Sequence[str | None] | None = None) -> PairBatch:
        """Assemble pairs (caches[video_index[i]], texts[i]); `keep_spans[i]` realises t' as a mask.

        `answers[i]` ("Yes"/"No"), where given, appends the label answer token to pair i, so that
        `answer_and_eos_logprobs` can also read P(end of sequence) after it (training labels).
        """
        if len(video_index) != len(texts):
            raise ValueError(f"{len(video_index)} video indices for {len(texts)} texts")
        spans = keep_spans if keep_spans is not None else [None] * len(texts)
        labels = answers if answers is not None else [None] * len(texts)
        if len(spans) != len(texts) or len(labels) != len(texts):
            raise ValueError(f"{len(spans)} keep_spans and {len(labels)} answers entries for {len(texts)} texts")
        tails = [self.split(t, s) for t, s in zip(texts, spans)]
        for (ids, mask, _), label in zip(tails, labels):
            if label is not None:
                ids.append(self._answer_ids[label])
                mask.append(1)
        return PairBatch(caches, list(video_index), [t[0] for t in tails], [t[1] for t in tails],
                         [t[2] for t in tails], [label is not None for label in labels])

    # -- the LLM ----------------------------------------------------------------------------------
    def _pad(self, rows: list[torch.Tensor], value, side: str | None = None) -> torch.Tensor:
        """Stack 1-D (or (3, L)) rows, padded on `side` along the last dim."""
        width = max(r.shape[-1] for r in rows)
        left = (side or self.padding_side) == "left"
        out = []
        for r in rows:
            pad = r.new_full((*r.shape[:-1], width - r.shape[-1]), value)
            out.append(torch.cat([pad, r] if left else [r, pad], dim=-1))
        return torch.stack(out, dim=-2)

    def _embeddings(self, ids: torch.Tensor, caches: list[VisionCache]) -> torch.Tensor:
        video = (ids == self.lmm.video_token_id).unsqueeze(-1)
        # The placeholder id may lie past the embedding table (mPLUG-Owl's): it is overwritten anyway.
        embeds = self._embed(ids.masked_fill(video.squeeze(-1), 0))
        features = torch.cat([c.features for c in caches]).to(embeds.dtype)
        return embeds.masked_scatter(video, features)

    def _readout(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logp = torch.log_softmax(self._head(hidden).float(), dim=-1)
        return logp[:, self._yes].logsumexp(-1), logp[:, self._no].logsumexp(-1)

    def _eos_readout(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self._head(hidden).float(), dim=-1)[:, self.lmm.tokenizer.eos_token_id]

    def _plain(self, batch: PairBatch, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each pair's whole sequence through the LLM (vision features still cached)."""
        device = self.lmm.device
        caches = [batch.caches[batch.video_index[i]] for i in rows]
        ids, mask, pos = [], [], []
        for i, c in zip(rows, caches):
            tail, seen = torch.tensor(batch.tail_ids[i], device=device), batch.seen(i)
            ids.append(torch.cat([c.prefix_ids[:seen], tail]))
            mask.append(torch.cat([torch.ones_like(c.prefix_ids[:seen]),
                                   torch.tensor(batch.tail_mask[i], device=device)]))
            pos.append(torch.cat([c.positions[..., :seen], c.positions_after(seen, len(tail))], dim=-1))
        lengths = torch.tensor([len(i) for i in ids])
        pad_id = self.lmm.tokenizer.pad_token_id or 0
        ids, mask, pos = self._pad(ids, pad_id), self._pad(mask, 0), self._pad(pos, 0)
        out = self.lmm.language_model(inputs_embeds=self._embeddings(ids, caches), attention_mask=mask,
                                      position_ids=pos, use_cache=False)
        last = lengths - 1 if self.padding_side == "right" else torch.full_like(lengths, ids.shape[-1] - 1)
        return self._at_ends(out.last_hidden_state, torch.arange(len(rows)), last.to(device), batch, rows)

    def _at_ends(self, hidden: torch.Tensor, row: torch.Tensor, last: torch.Tensor, batch: PairBatch,
                 pairs: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states where each pair's answer is read, and at its last token."""
        answered = torch.tensor([batch.has_answer[i] for i in pairs], device=last.device, dtype=last.dtype)
        return hidden[row, last - answered], hidden[row, last]

    def _shared(self, batch: PairBatch, groups: dict[int, list[int]], chunk: int
                ) -> list[tuple[list[int], tuple[torch.Tensor, torch.Tensor]]]:
        """One LLM pass over the prefixes of the videos in `groups` (video -> its pair rows), then their
        captions from the cached keys/values, at most `chunk` pairs per pass.

        In a caption pass each row holds one video's captions packed one after another, each seeing
        its video's prefix and its own earlier tokens only (a block mask), so the prefix's keys/values
        are neither copied per caption nor recomputed.
        """
        attention = self.lmm.hf_model.config._attn_implementation
        if attention not in ("sdpa", "eager"):
            raise ValueError(f"prefix sharing passes a block attention mask, which {attention!r} attention "
                             "does not take: load the model with attn_implementation='sdpa' (or 'eager'), "
                             "or score with prefix_sharing=False")
        caches = [batch.caches[v] for v in groups]
        pad_id = self.lmm.tokenizer.pad_token_id or 0
        prefix = self._pad([c.prefix_ids for c in caches], pad_id, "right")
        prefix_valid = self._pad([torch.ones_like(c.prefix_ids) for c in caches], 0, "right")
        out = self.lmm.language_model(inputs_embeds=self._embeddings(prefix, caches), attention_mask=prefix_valid,
                                      position_ids=self._pad([c.positions for c in caches], 0, "right"),
                                      use_cache=True)
        shared = SharedPrefix(out.past_key_values, prefix.shape[-1], self.lmm.hf_model.config, self.lmm.source)
        # A video's captions are cut into pieces of at most `chunk` pairs; a pass takes consecutive
        # pieces up to `chunk` pairs. A full piece fills a pass on its own, so the pieces of one pass
        # come from consecutive, distinct videos and its rows match a slice of the prefix batch.
        pieces = [(slot, rows[s:s + chunk]) for slot, rows in enumerate(groups.values())
                  for s in range(0, len(rows), chunk)]
        passes: list[list[tuple[int, list[int]]]] = [[]]
        for piece in pieces:
            if passes[-1] and sum(len(r) for _, r in passes[-1]) + len(piece[1]) > chunk:
                passes.append([])
            passes[-1].append(piece)
        return [self._caption_pass(batch, caches, shared, prefix_valid, p) for p in passes]

    def _caption_pass(self, batch: PairBatch, caches: list[VisionCache], shared: SharedPrefix, prefix_valid: torch.Tensor,
                      pieces: list[tuple[int, list[int]]]) -> tuple[list[int], tuple[torch.Tensor, torch.Tensor]]:
        device, dtype = self.lmm.device, self._embed.weight.dtype
        first, last = pieces[0][0], pieces[-1][0] + 1
        ids, visible, owner, offset, positions, ends, seen = [], [], [], [], [], [], []
        for slot, rows in pieces:
            lengths = torch.tensor([len(batch.tail_ids[i]) for i in rows], device=device)
            ids.append(torch.tensor([t for i in rows for t in batch.tail_ids[i]], device=device))
            visible.append(torch.tensor([m for i in rows for m in batch.tail_mask[i]], device=device, dtype=torch.bool))
            owner.append(torch.repeat_interleave(torch.arange(len(rows), device=device), lengths))
            offset.append(torch.cat([torch.arange(int(n), device=device) for n in lengths]))
            positions.append(torch.cat([caches[slot].positions_after(batch.seen(i), len(batch.tail_ids[i]))
                                        for i in rows], dim=-1))
            seen.append(torch.repeat_interleave(torch.tensor([batch.seen(i) for i in rows], device=device), lengths))
            ends.append(lengths.cumsum(0) - 1)
        real = self._pad([torch.ones_like(i, dtype=torch.bool) for i in ids], False, "right")
        owner, offset = self._pad(owner, -1, "right"), self._pad(offset, 0, "right")
        visible = self._pad(visible, False, "right") & real
        same_caption = (owner[:, :, None] == owner[:, None, :]) & (offset[:, :, None] >= offset[:, None, :])
        # A caption sees the prefix tokens its own prompt shares; padding queries see the whole prefix,
        # so that no row of the softmax is empty.
        seen = self._pad(seen, prefix_valid.shape[-1], "right")
        allowed = torch.cat([sees_prefix(prefix_valid[first:last, None, :], seen),
                             same_caption & visible[:, None, :] & real[:, :, None]], dim=-1)
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
        out = shared.continue_rows(self.lmm.language_model, slice(first, last),
                                   inputs_embeds=self._embed(self._pad(ids, 0, "right")), attention_mask=mask[:, None],
                                   position_ids=self._pad(positions, 0, "right"))
        row = torch.cat([torch.full_like(e, r) for r, e in enumerate(ends)])
        pairs = [i for _, rows in pieces for i in rows]
        return pairs, self._at_ends(out.last_hidden_state, row, torch.cat(ends), batch, pairs)

    def answer_logprobs(self, batch: PairBatch, prefix_sharing: bool | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log P(Yes), log P(No)) per pair, full-vocabulary softmax summed over the Yes/No variants.

        Keeps gradients (training); the vision features in `batch.caches` are constants.
        """
        lp_yes, lp_no, _ = self._logprobs(batch, prefix_sharing, eos=False)
        return lp_yes, lp_no

    def answer_and_eos_logprobs(self, batch: PairBatch, prefix_sharing: bool | None = None
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`answer_logprobs` plus log P(end of sequence | prompt, label answer) for the pairs built
        with an answer (`pairs(..., answers=...)`; 0 for the others), in the same LLM passes."""
        return self._logprobs(batch, prefix_sharing, eos=True)

    def _logprobs(self, batch: PairBatch, prefix_sharing: bool | None, eos: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        sharing = self.prefix_sharing if prefix_sharing is None else prefix_sharing
        hf = self.lmm.hf_model
        if sharing and hf.training and hf.is_gradient_checkpointing:
            # Checkpointed decoder layers drop the KV cache (transformers), so no prefix can be reused.
            if not self._told_checkpointing:
                log.warning("gradient checkpointing is on: scoring without prefix sharing")
                self._told_checkpointing = True
            sharing = False
        lp_yes = torch.empty(len(batch), device=self.lmm.device)
        lp_no = torch.empty(len(batch), device=self.lmm.device)
        lp_eos = torch.zeros(len(batch), device=self.lmm.device) if eos else None
        if sharing:
            groups: dict[int, list[int]] = {}
            for i, v in enumerate(batch.video_index):
                groups.setdefault(v, []).append(i)
            if torch.is_grad_enabled():
                # Backward keeps the activations of every pass anyway, so all videos go through one
                # prefix pass and one caption pass: fewer, larger calls.
                parts = self._shared(batch, groups, chunk=len(batch))
            else:
                # Without gradients, `videos_per_pass` videos at a time bound the cached keys/values (a
                # 7B model's prefix of one video holds about a gigabyte); tiny models gain from more.
                videos = list(groups.items())
                parts = [p for s in range(0, len(videos), self.videos_per_pass)
                         for p in self._shared(batch, dict(videos[s:s + self.videos_per_pass]), self.batch_size)]
        else:
            chunks = [list(range(s, min(s + self.batch_size, len(batch)))) for s in range(0, len(batch),
                                                                                            self.batch_size)]
            parts = [(rows, self._plain(batch, rows)) for rows in chunks]
        for rows, (at_answer, at_last) in parts:
            index = torch.tensor(rows, device=self.lmm.device)
            y, n = self._readout(at_answer)
            lp_yes = lp_yes.index_put((index,), y)
            lp_no = lp_no.index_put((index,), n)
            answered = torch.tensor([batch.has_answer[i] for i in rows], device=index.device)
            if eos and answered.any():
                lp_eos = lp_eos.index_put((index[answered],), self._eos_readout(at_last[answered]))
        return lp_yes, lp_no, lp_eos

    # -- scores -----------------------------------------------------------------------------------
    @torch.no_grad()
    def score_pairs(self, batch: PairBatch, prefix_sharing: bool | None = None) -> torch.Tensor:
        lp_yes, lp_no = self.answer_logprobs(batch, prefix_sharing)
        return torch.sigmoid(lp_yes - lp_no).cpu()

    def score(self, videos: Sequence[Video], texts: Sequence[str],
              keep_spans: Sequence[Sequence[Span] | None] | None = None,
              prefix_sharing: bool | None = None) -> torch.Tensor:
        """f for each pair (videos[i], texts[i]); a video passed several times is encoded once."""
        if len(videos) != len(texts):
            raise ValueError(f"{len(videos)} videos for {len(texts)} texts")
        slot: dict[int | str, int] = {}
        unique, index = [], []
        for v in videos:
            key = id(v) if isinstance(v, (np.ndarray, Clip)) else str(v)
            if key not in slot:
                slot[key] = len(unique)
                unique.append(v)
            index.append(slot[key])
        batch = self.pairs(self.encode(unique), index, texts, keep_spans)
        return self.score_pairs(batch, prefix_sharing)

    def score_many(self, video: Video | VisionCache, texts: Sequence[str],
                   keep_spans: Sequence[Sequence[Span] | None] | None = None,
                   prefix_sharing: bool | None = None) -> torch.Tensor:
        """f of one video (or its encoding) against many captions."""
        return self.score_each([video], [texts], None if keep_spans is None else [keep_spans], prefix_sharing)[0]

    def score_each(self, videos: Sequence[Video | VisionCache], texts: Sequence[Sequence[str]],
                   keep_spans: Sequence[Sequence[Sequence[Span] | None]] | None = None,
                   prefix_sharing: bool | None = None) -> list[torch.Tensor]:
        """f of each video (or its encoding) against its own captions, `texts[i]` for `videos[i]`;
        the LLM takes `videos_per_pass` of them at a time."""
        caches = [v if isinstance(v, VisionCache) else None for v in videos]
        todo = [i for i, c in enumerate(caches) if c is None]
        for i, cache in zip(todo, self.encode([videos[i] for i in todo])):
            caches[i] = cache
        index = [i for i, own in enumerate(texts) for _ in own]
        spans = None if keep_spans is None else [s for own in keep_spans for s in own]
        batch = self.pairs(caches, index, [t for own in texts for t in own], spans)
        return list(self.score_pairs(batch, prefix_sharing).split([len(own) for own in texts]))
