"""AlignmentScorer: f against the model's own forward, padding/batch/prefix-sharing invariance, t' masks,
gradients, the vision tower running once per video, and the video-token mismatch error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synvita.models.alignment import AlignmentScorer, VideoTokenMismatchError
from synvita.models.families import load_video_lmm
from synvita.tiny import build_tiny
from synvita.tiny.lmms import TINY_KINDS

TEXTS = ["a man opens a door", "the dog runs to the left", "a cat", "two people dance before the red car"]
TOL = 1e-4


@pytest.fixture(scope="module")
def lmms(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {kind: load_video_lmm(build_tiny(kind, root / kind, seed=5)) for kind in TINY_KINDS}


@pytest.fixture(scope="module")
def videos():
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (4, 40, 48, 3), dtype=np.uint8) for _ in range(2)]


def reference_f(lmm, scorer, videos, texts, attention_edit=None):
    """f from the checkpoint's own forward on the processor's inputs: one unpadded pair at a time."""
    out = []
    for video, text in zip(videos, texts):
        inputs = lmm.processor(text=[scorer.prefix_text + text + scorer.suffix_text], videos=[video],
                               return_tensors="pt")
        extra = {}
        if attention_edit is not None:
            # Masked tokens keep their positions: pass the positions of the unmasked sequence.
            if lmm.family.mrope:
                rope_args = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask",
                                                                           "pixel_values_videos")}
                extra["position_ids"], _ = lmm.model.model.get_rope_index(inputs["input_ids"], **rope_args)
            else:
                extra["position_ids"] = torch.arange(inputs["input_ids"].shape[1])[None]
            inputs["attention_mask"] = attention_edit(scorer, text, inputs)
        with torch.no_grad():
            logits = lmm.model(**inputs, **extra).logits[0, -1].double()
        p = logits.softmax(-1)
        p_yes, p_no = p[lmm.yes_ids].sum(), p[lmm.no_ids].sum()
        out.append(float(p_yes / (p_yes + p_no)))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_f_equals_the_models_own_forward_for_any_padding_batch_and_sharing(kind, lmms, videos):
    lmm = lmms[kind]
    pairs_v = [videos[0], videos[1], videos[0], videos[1]]
    ref = reference_f(lmm, AlignmentScorer(lmm), pairs_v, TEXTS)
    assert ref.max() - ref.min() > 0.05, "tiny model too flat for the test to mean anything"
    # Padding side only matters without sharing: shared tails always follow the cached prefix.
    for sharing, side in ((False, "left"), (False, "right"), (True, "right")):
        for batch_size in (1, 3):
            scorer = AlignmentScorer(lmm, batch_size=batch_size, prefix_sharing=sharing, padding_side=side)
            got = scorer.score(pairs_v, TEXTS).double()
            assert torch.allclose(got, ref, atol=TOL), (sharing, side, batch_size, got, ref)
    # One video against many captions.
    many = AlignmentScorer(lmm).score_many(videos[1], TEXTS).double()
    assert torch.allclose(many, reference_f(lmm, AlignmentScorer(lmm), [videos[1]] * 4, TEXTS), atol=TOL)


# What a tokenizer may split differently inside the prompt than alone: a quote that fuses with the
# prompt's opening quote, a leading space, bytes without a token of their own, a trailing quote.
EDGE_CAPTIONS = ['"quoted" words open it', " a leading space", "café naïve 日本語", 'it ends with a quote"',
                 "a man opens a door"]


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_edge_case_captions_score_as_the_processors_full_prompt(kind, lmms, videos):
    lmm = lmms[kind]
    scorer = AlignmentScorer(lmm, batch_size=3)
    batch = scorer.pairs(scorer.encode([videos[0]]), [0] * len(EDGE_CAPTIONS), EDGE_CAPTIONS)
    # The leading quote re-spells the prompt's last token; the other captions keep the whole prefix.
    assert batch.dropped == [1, 0, 0, 0, 0]
    ref = reference_f(lmm, scorer, [videos[0]] * len(EDGE_CAPTIONS), EDGE_CAPTIONS)
    for sharing in (True, False):
        got = scorer.score([videos[0]] * len(EDGE_CAPTIONS), EDGE_CAPTIONS, prefix_sharing=sharing).double()
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="video placeholder"):
        scorer.score([videos[0]], [f"a {lmm.video_token} in the caption"])


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_keep_spans_hide_caption_tokens_by_attention(kind, lmms, videos):
    lmm = lmms[kind]
    text = "the dog runs to the left"
    keep = [(4, 7), (16, 19)]  # "dog", the second "the"
    assert [text[a:b] for a, b in keep] == ["dog", "the"]
    for sharing in (False, True):
        scorer = AlignmentScorer(lmm, prefix_sharing=sharing)
        masked, full, empty = scorer.score([videos[0]] * 3, [text] * 3, keep_spans=[keep, [(0, len(text))], []])
        ref_masked = reference_f(lmm, scorer, [videos[0]], [text], _edit_spans(keep))
        ref_empty = reference_f(lmm, scorer, [videos[0]], [text], _edit_spans([]))
        assert abs(float(masked) - float(ref_masked)) < TOL
        assert abs(float(empty) - float(ref_empty)) < TOL
        assert abs(float(full) - float(reference_f(lmm, scorer, [videos[0]], [text]))) < TOL
        assert abs(float(masked) - float(full)) > 1e-3  # the mask changes f


def _edit_spans(spans):
    def edit(scorer, text, inputs):
        """Hide, from the full prompt's own offsets, the caption tokens that overlap no kept span."""
        prompt = scorer.prefix_text + text + scorer.suffix_text
        start = len(scorer.prefix_text)
        enc = scorer.lmm.tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc.offset_mapping
        n_after = len(offsets) - next(i for i, (a, b) in enumerate(offsets) if b > start)
        mask = inputs["attention_mask"].clone()
        for j, (a, b) in enumerate(offsets[len(offsets) - n_after:]):
            in_caption = a < b and a < start + len(text) and b > start
            if in_caption and not any(a < start + y and b > start + x for x, y in spans):
                mask[0, mask.shape[1] - n_after + j] = 0
        return mask
    return edit


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_clips_of_any_length_and_size_share_one_call(kind, lmms):
    lmm = lmms[kind]
    rng = np.random.default_rng(11)
    clips = [rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8) for n, h, w in ((1, 40, 48), (3, 80, 40), (5, 56, 112))]
    size = lmm.processor.video_processor.size
    if lmm.family.mrope:  # let Qwen's dynamic resolution give each clip its own grid
        lmm.processor.video_processor.size = {"shortest_edge": 28 * 28, "longest_edge": 84 * 84}
    try:
        ref = reference_f(lmm, AlignmentScorer(lmm), clips, TEXTS[:3])
        for sharing in (False, True):
            got = AlignmentScorer(lmm, prefix_sharing=sharing).score(clips, TEXTS[:3]).double()
            assert torch.allclose(got, ref, atol=TOL), (sharing, got, ref)
        # With gradients on, all prefixes (here of different lengths) share one padded pass.
        scorer = AlignmentScorer(lmm, batch_size=1)
        batch = scorer.pairs(scorer.encode(clips), [0, 1, 2, 1, 0], TEXTS[:3] + TEXTS[:2])
        with torch.enable_grad():
            lp_yes, lp_no = scorer.answer_logprobs(batch)
        got = torch.sigmoid(lp_yes - lp_no).detach().double()
        assert torch.allclose(got[:3], ref, atol=TOL), (got, ref)
        assert torch.allclose(got[3:], reference_f(lmm, scorer, clips[1::-1], TEXTS[:2]), atol=TOL)
    finally:
        lmm.processor.video_processor.size = size


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_videos_share_llm_passes_without_gradients_and_score_as_the_models_own_forward(kind, lmms):
    lmm = lmms[kind]
    rng = np.random.default_rng(12)
    # clips of different lengths (prefixes of different lengths), each with its own number of captions
    clips = [rng.integers(0, 256, (n, 40, 48, 3), dtype=np.uint8) for n in (2, 4, 3)]
    texts = [TEXTS[:1], TEXTS[1:4], TEXTS[2:4]]
    ref = [reference_f(lmm, AlignmentScorer(lmm), [c] * len(t), t) for c, t in zip(clips, texts)]
    llm_calls = []  # a prefix pass per group of videos, then caption passes of at most batch_size pairs
    hook = lmm.language_model.register_forward_hook(lambda *_: llm_calls.append(1))
    try:
        for videos_per_pass, batch_size, calls in ((1, 16, 6), (2, 1, 8), (3, 16, 2)):
            llm_calls.clear()
            scorer = AlignmentScorer(lmm, batch_size=batch_size, videos_per_pass=videos_per_pass)
            got = scorer.score_each(scorer.encode(clips), texts)
            assert len(llm_calls) == calls, (videos_per_pass, batch_size, len(llm_calls))
            for g, r in zip(got, ref):
                assert torch.allclose(g.double(), r, atol=TOL), (videos_per_pass, batch_size, g, r)
    finally:
        hook.remove()
    with pytest.raises(ValueError, match="videos_per_pass"):
        AlignmentScorer(lmm, videos_per_pass=0)


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_label_answers_give_eos_after_them_and_leave_the_answer_readout(kind, lmms, videos):
    lmm = lmms[kind]
    labels = ["Yes", "No", None, "Yes"]
    pairs_v = [videos[0], videos[1], videos[0], videos[1]]
    ref_f = reference_f(lmm, AlignmentScorer(lmm), pairs_v, TEXTS)
    for sharing in (False, True):
        scorer = AlignmentScorer(lmm, batch_size=3, prefix_sharing=sharing)
        batch = scorer.pairs(scorer.encode(videos), [0, 1, 0, 1], TEXTS, answers=labels)
        with torch.no_grad():
            lp_yes, lp_no, lp_eos = scorer.answer_and_eos_logprobs(batch)
        assert torch.allclose(torch.sigmoid(lp_yes - lp_no).double(), ref_f, atol=TOL)
        assert lp_eos[2] == 0
        for i in (0, 1, 3):
            # Independent: the processor's prompt with the answer written after it, the model's own forward.
            prompt = scorer.prefix_text + TEXTS[i] + scorer.suffix_text
            answer = prompt + (" " if not prompt.endswith((" ", "\n")) else "") + labels[i]
            # The label is the last token of the processor's prompt + answer, written after the prompt as scored.
            label = lmm.processor(text=[answer], videos=[pairs_v[i]], return_tensors="pt")["input_ids"][:, -1:]
            assert label.item() in (lmm.yes_ids if labels[i] == "Yes" else lmm.no_ids)
            inputs = lmm.processor(text=[prompt], videos=[pairs_v[i]], return_tensors="pt")
            width = inputs["input_ids"].shape[1]
            for key, value in list(inputs.items()):  # per-token inputs (e.g. Qwen's token types) grow by one text token
                if key not in ("input_ids", "attention_mask") and value.dim() == 2 and value.shape[1] == width:
                    inputs[key] = torch.cat([value, torch.zeros_like(label)], dim=1)
            inputs["input_ids"] = torch.cat([inputs["input_ids"], label], dim=1)
            inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(label)], dim=1)
            with torch.no_grad():
                logp = lmm.model(**inputs).logits[0, -1].double().log_softmax(-1)
            assert abs(float(lp_eos[i]) - float(logp[lmm.tokenizer.eos_token_id])) < TOL, (sharing, i)


def test_gradients_flow_to_the_llm_only_and_sharing_gives_the_same_gradients(lmms, videos):
    lmm = lmms["qwen2-vl"]
    scorer = AlignmentScorer(lmm, batch_size=2)
    batch = scorer.pairs(scorer.encode(videos), [0, 0, 1, 1], TEXTS, [None, [(0, 1)], None, []])
    grads = []
    for sharing in (False, True):
        lmm.model.zero_grad()
        lp_yes, lp_no = scorer.answer_logprobs(batch, prefix_sharing=sharing)
        assert lp_yes.requires_grad and (lp_yes <= 0).all() and (lp_no <= 0).all()
        (lp_yes - 2 * lp_no).sum().backward()
        grads.append({n: p.grad.clone() for n, p in lmm.model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert any(".self_attn.q_proj." in n for n in grads[0])
    assert not any(n.startswith(lmm.family.frozen_modules()) for n in grads[0])
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], atol=1e-4, rtol=1e-3), name
    lmm.model.zero_grad(set_to_none=True)

    # Checkpointed layers drop the KV cache: sharing must then step aside, not read an empty cache.
    plain = scorer.answer_logprobs(batch, prefix_sharing=False)[0].detach()
    lmm.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lmm.model.train()
    try:
        checkpointed = scorer.answer_logprobs(batch, prefix_sharing=True)[0].detach()
    finally:
        lmm.model.gradient_checkpointing_disable()
        lmm.model.eval()
    assert torch.allclose(checkpointed, plain, atol=1e-5)


def test_vision_tower_runs_once_per_video(lmms, videos):
    lmm = lmms["video-llava"]
    seen = []
    hook = lmm.model.model.video_tower.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    try:
        AlignmentScorer(lmm).score([videos[0], videos[1], videos[0], videos[1], videos[0]], TEXTS + ["x"])
    finally:
        hook.remove()
    assert sum(seen) == 2 * len(videos[0])  # frames of two distinct videos, each once


def test_video_token_mismatch_says_what_to_change(lmms, videos):
    lmm = lmms["video-llava"]
    scorer = AlignmentScorer(lmm)
    lmm.processor.num_additional_image_tokens = 0  # the processor now expands 4 tokens per frame, not 5
    try:
        with pytest.raises(VideoTokenMismatchError, match=r"16 video tokens.*20 feature vectors.*4-frame.*num_frames"):
            scorer.score([videos[0]], ["a cat"])
    finally:
        lmm.processor.num_additional_image_tokens = 1
    with pytest.raises(ValueError, match="contains the video placeholder"):
        scorer.score([videos[0]], ["a <video> cat"])


def test_entail_command_prints_f_per_text_in_order(tmp_path, capsys):
    from peft import LoraConfig, get_peft_model

    from synvita.cli import main as cli_main
    from synvita.data.video import FrameSampler, read_video, write_video

    model_dir = build_tiny("llava-onevision", tmp_path / "lmm", seed=2)
    capsys.readouterr()  # drop what the imports above logged
    rng = np.random.default_rng(3)
    clip = tmp_path / "clip.mp4"
    write_video(clip, rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8), fps=5)
    texts = ["a dog jumps", 'a "quoted" word', "two cats"]
    argv = ["entail", "--model", str(model_dir), "--video", str(clip), "--frames", "4"]
    for t in texts:
        argv += ["--text", t]

    assert cli_main(argv) == 0
    printed = [float(x) for x in capsys.readouterr().out.split()]
    lmm = load_video_lmm(model_dir)
    frames = read_video(clip, FrameSampler("uniform", num_frames=4))
    expected = reference_f(lmm, AlignmentScorer(lmm), [frames] * 3, texts)
    assert len(printed) == 3 and np.allclose(printed, expected.numpy(), atol=2e-6)

    # A LoRA adapter (non-zero init so it changes the model) is applied before scoring.
    peft_model = get_peft_model(lmm.model, LoraConfig(target_modules=lmm.family.lora_target_regex("attention"), r=4,
                                                      init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    assert cli_main(argv + ["--adapter", str(tmp_path / "adapter")]) == 0
    adapted = [float(x) for x in capsys.readouterr().out.split()]
    lmm.model = peft_model.eval()
    expected = reference_f(lmm, AlignmentScorer(lmm), [frames] * 3, texts)
    assert np.allclose(adapted, expected.numpy(), atol=1e-5) and not np.allclose(adapted, printed, atol=1e-3)

    assert cli_main(argv[:3] + ["--video", str(tmp_path / "missing.mp4"), "--text", "x"]) == 2
    assert "missing.mp4" in capsys.readouterr().err


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_a_clips_frame_rate_reaches_the_processor(kind, lmms, tmp_path):
    """A clip read from a file scores as the model's own forward on the processor's inputs with that
    clip's metadata (frames sampled, fps over its duration)."""
    from synvita.data.video import FrameSampler, read_clip, write_video

    lmm = lmms[kind]
    rng = np.random.default_rng(3)
    write_video(tmp_path / "c.mp4", rng.integers(0, 256, (16, 40, 48, 3), dtype=np.uint8), fps=4)
    clip = read_clip(tmp_path / "c.mp4", FrameSampler(num_frames=8))
    assert clip.fps == pytest.approx(8 / 4.0)  # 8 frames over 4 seconds
    scorer = AlignmentScorer(lmm)
    got = scorer.score([clip, clip], TEXTS[:2]).double()
    meta = [{"total_num_frames": 8, "fps": 2.0, "frames_indices": list(range(8))}]
    ref = []
    for text in TEXTS[:2]:
        inputs = lmm.processor(text=[scorer.prefix_text + text + scorer.suffix_text], videos=[clip.frames],
                               video_metadata=meta, do_sample_frames=False, return_tensors="pt")
        with torch.no_grad():
            p = lmm.model(**inputs).logits[0, -1].double().softmax(-1)
        ref.append(float(p[lmm.yes_ids].sum() / (p[lmm.yes_ids].sum() + p[lmm.no_ids].sum())))
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64), rtol=0, atol=1e-5)
    # the path and the Clip give the same f
    torch.testing.assert_close(AlignmentScorer(lmm, FrameSampler(num_frames=8)).score([tmp_path / "c.mp4"], TEXTS[:1]),
                               got[:1].float(), rtol=0, atol=1e-6)


def test_qwen25_temporal_positions_follow_the_clips_frame_rate(lmms, tmp_path):
    """Qwen2.5-VL (built with the released tokens_per_second = 2) spaces a clip's temporal patches by
    tokens_per_second x temporal_patch_size / fps, with fps taken from the clip itself."""
    from synvita.data.video import FrameSampler, probe_video, read_clip, write_video

    lmm = lmms["qwen2.5-vl"]
    vision = lmm.hf_model.config.vision_config
    assert vision.tokens_per_second == 2
    rng = np.random.default_rng(4)
    write_video(tmp_path / "c.mp4", rng.integers(0, 256, (24, 56, 56, 3), dtype=np.uint8), fps=6)
    clip = read_clip(tmp_path / "c.mp4", FrameSampler(num_frames=8))
    cache = AlignmentScorer(lmm).encode([clip])[0]
    video = cache.prefix_ids == lmm.video_token_id
    temporal = cache.positions[0][video]
    per_patch = temporal.reshape(8 // vision.temporal_patch_size, -1)
    assert (per_patch == per_patch[:, :1]).all()  # one temporal position per temporal patch
    steps = per_patch[:, 0].diff()
    interval = vision.tokens_per_second * vision.temporal_patch_size / (8 / probe_video(tmp_path / "c.mp4").duration)
    assert interval == pytest.approx(2) and steps.tolist() == [2, 2, 2]  # 8 frames over 4 s: 2 fps
