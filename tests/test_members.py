"""Tiny VQA members: Auto-class round trip, batched P(Yes) against unpadded single-pair forwards,
Yes/No token derivation, presets and errors, and the ensemble mean."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synvita.models.families import FamilyError, answer_token_ids
from synvita.scoring.ensemble import ensemble_mean
from synvita.scoring.errors import MemberError
from synvita.scoring.members import (
    MEMBERS, MemberSpec, load_member,
)
from synvita.tiny.members import TINY_MEMBERS
from synvita.text.prompts import VQA_QUESTION

EXPECTED = {
    "llava-1.5": ("LlavaForConditionalGeneration", "LlavaProcessor", "llava-1.5"),
    "instructblip": ("InstructBlipForConditionalGeneration", "InstructBlipProcessor", "instructblip"),
    "qwen2-vl-image": ("Qwen2VLForConditionalGeneration", "Qwen2VLProcessor", "qwen2-vl"),
}
TEXTS = ["a man is holding two large dumbbells", "a dog", "the red ball rolls left then right"]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("members")
    return {kind: TINY_MEMBERS[kind](root / kind, 0) for kind in EXPECTED}


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (24 + 8 * i, 36, 3), dtype=np.uint8) for i in range(3)]


@pytest.mark.parametrize("kind", sorted(EXPECTED))  # CLIP-FlanT5 has its own tests (test_clip_flant5.py)
def test_auto_class_round_trip(kind, tiny_dirs, tmp_path, frames):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_dirs[kind])
    processor = AutoProcessor.from_pretrained(tiny_dirs[kind])
    assert type(model).__name__ == EXPECTED[kind][0]
    assert type(processor).__name__ == EXPECTED[kind][1]
    again = AutoModelForImageTextToText.from_pretrained(TINY_MEMBERS[kind](tmp_path / "again", 0))
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _single_pair_p_yes(member, frame, text):
    """P(Yes) from one unpadded forward, read at the very last position (or decoder step 0)."""
    batch = member.processor(images=[frame], text=[member.prompt(text)], return_tensors="pt")
    with torch.no_grad():
        if member.seq2seq:
            start = member.model.config.text_config.decoder_start_token_id
            logits = member.model(**batch, decoder_input_ids=torch.tensor([[start]])).logits[0, 0]
        else:
            logits = member.model(**batch).logits[0, -1]
    probs = torch.softmax(logits.double(), -1)
    return float(probs[member.yes_ids].sum())


@pytest.mark.parametrize("sharing", [True, False])
@pytest.mark.parametrize("kind", [*sorted(EXPECTED), "qwen2.5-vl"])
def test_batched_p_yes_matches_single_pairs(kind, sharing, tiny_dirs, frames, tmp_path):
    if kind == "qwen2.5-vl":  # the tiny video LMM of that family, used on single frames
        spec = MemberSpec(name=kind, kind=kind, model="tiny:qwen2.5-vl", batch_size=4, prefix_sharing=sharing)
    else:
        spec = MemberSpec(name=kind, kind=EXPECTED[kind][2], model=str(tiny_dirs[kind]), batch_size=4,
                          prefix_sharing=sharing)
    member = load_member(spec, cache_dir=tmp_path)
    # decoder-only members share the prompt before the caption; T5 (InstructBLIP) cannot
    assert member.prefix_sharing == (sharing and kind != "instructblip")
    assert not member.prefix_sharing or member._split(TEXTS) is not None
    member.processor.tokenizer.padding_side = "right" if kind == "llava-1.5" else "left"
    p = member.p_yes(frames, TEXTS)
    assert p.shape == (len(frames), len(TEXTS))
    expected = torch.tensor([[_single_pair_p_yes(member, f, t) for t in TEXTS] for f in frames], dtype=torch.float64)
    torch.testing.assert_close(p.double(), expected, rtol=0, atol=1e-5)
    assert p.std() > 0  # frames and captions must matter, or the comparison proves little


EDGE_CAPTIONS = ['"quoted" words open it', " a leading space", "café naïve 日本語", 'it ends with a quote"']


@pytest.mark.parametrize("kind", [*sorted(EXPECTED), "qwen2.5-vl"])  # CLIP-FlanT5: test_clip_flant5.py
def test_edge_case_captions_score_as_the_processors_full_prompt(kind, tiny_dirs, frames, tmp_path):
    model = "tiny:qwen2.5-vl" if kind == "qwen2.5-vl" else str(tiny_dirs[kind])
    member = load_member(MemberSpec(name=kind, kind=EXPECTED.get(kind, (0, 0, kind))[2], model=model, batch_size=3),
                         cache_dir=tmp_path)
    if member.prefix_sharing:
        # the leading quote re-spells the prompt's last token (one dropped), the others share it all
        assert [d for d, _ in member._split(EDGE_CAPTIONS)] == [1, 0, 0, 0]
    expected = torch.tensor([[_single_pair_p_yes(member, f, t) for t in EDGE_CAPTIONS] for f in frames[:2]],
                            dtype=torch.float64)
    torch.testing.assert_close(member.p_yes(frames[:2], EDGE_CAPTIONS).double(), expected, rtol=0, atol=1e-5)
    with pytest.raises(MemberError, match="image placeholder"):
        member.p_yes(frames[:1], [f"a {member.processor.image_token} here"])


def test_llava_member_shares_the_prefix_with_the_llama_tokenizer(tiny_dirs, frames):
    """With the Llama pipeline a caption alone gains a "▁"; the token-level split shares regardless:
    the vision tower runs once per frame, not once per (frame, caption)."""
    member = load_member(MemberSpec(name="l", kind="llava-1.5", model=str(tiny_dirs["llava-1.5"]), batch_size=2))
    tok = member.processor.tokenizer
    assert tok.tokenize("a dog")[0] == "▁a" and tok.tokenize('"a dog')[1] == "a"
    seen = []
    hook = member.model.model.vision_tower.register_forward_hook(lambda m, args, out: seen.append(len(args[0])))
    try:
        member.p_yes(frames[:2], TEXTS)
        shared = list(seen)
        member.prefix_sharing = False
        seen.clear()
        member.p_yes(frames[:2], TEXTS)
    finally:
        hook.remove()
    assert shared == [2] and sum(seen) == 2 * len(TEXTS)


def test_yes_no_tokens_and_template(tiny_dirs):
    member = load_member(MemberSpec(name="q", kind="qwen2-vl", model=str(tiny_dirs["qwen2-vl-image"]),
                                    template='Is "{text}" shown? Yes or no.',
                                    processor_kwargs={"size": {"shortest_edge": 3136, "longest_edge": 3136}}))
    assert member.processor.image_processor.size.longest_edge == 3136
    tok = member.processor.tokenizer
    assert tok.convert_tokens_to_ids("Yes") in member.yes_ids
    assert tok.convert_tokens_to_ids("No") in member.no_ids
    for i in member.yes_ids:
        assert tok.decode([i]).strip().lower() == "yes"
    assert 'Is "a dog" shown? Yes or no.' in member.prompt("a dog")
    t5 = load_member(MemberSpec(name="ib", kind="instructblip", model=str(tiny_dirs["instructblip"])))
    assert t5.prompt("a dog") == VQA_QUESTION.format(text="a dog")
    assert sorted(t5.processor.tokenizer.convert_ids_to_tokens(t5.yes_ids)) == ["▁Yes", "▁yes"]
    with pytest.raises(FamilyError, match="no single token for 'zzzzqqqq'"):
        answer_token_ids(tok, "zzzzqqqq")  # a multi-token spelling is never an answer token


def test_member_errors(tiny_dirs):
    with pytest.raises(MemberError, match=r"'llava' checkpoint, but InstructBlipForConditionalGeneration"):
        load_member(MemberSpec(name="x", kind="instructblip", model=str(tiny_dirs["llava-1.5"])))
    with pytest.raises(MemberError, match="no \\{text\\} slot"):
        load_member(MemberSpec(name="x", kind="llava-1.5", model=str(tiny_dirs["llava-1.5"]), template="Yes?"))
    with pytest.raises(MemberError, match="not a preset"):
        MemberSpec(name="my-model").resolved()
    assert MemberSpec(name="instructblip-flan-t5-xxl").resolved() == ("instructblip", "Salesforce/instructblip-flan-t5-xxl")
    assert MemberSpec(name="llava-1.5-13b").resolved() == ("llava-1.5", "llava-hf/llava-1.5-13b-hf")
    assert {"llava-1.5", "instructblip", "qwen2-vl", "qwen2.5-vl", "clip-flant5", "external"} <= set(MEMBERS.names())
    assert MemberSpec(name="clip-flant5-xxl").resolved() == ("clip-flant5", "zhiqiulin/clip-flant5-xxl")
    assert MemberSpec(name="clip-flant5-xl").resolved() == ("clip-flant5", "zhiqiulin/clip-flant5-xl")


EXTERNAL_SCORER = """
import numpy as np

def make(device, dtype, template):
    assert (device, dtype) == ("cpu", "float32") and "{text}" in template
    # mean brightness of the frame times the caption's share of letters 'a'
    return lambda frames, texts: [[f.mean() / 255 * t.count("a") / len(t) for t in texts] for f in frames]

def wrong_shape(device, dtype, template):
    return lambda frames, texts: np.zeros(len(texts))

def out_of_range(device, dtype, template):
    return lambda frames, texts: np.full((len(frames), len(texts)), 2.0)
"""


def test_external_member(tmp_path, monkeypatch, frames):
    (tmp_path / "my_scorer.py").write_text(EXTERNAL_SCORER)
    monkeypatch.syspath_prepend(str(tmp_path))
    texts = ["a cat", "the dog"]
    member = load_member(MemberSpec(name="mine", kind="external", model="my_scorer:make"))
    expected = [[f.mean() / 255 * t.count("a") / len(t) for t in texts] for f in frames]
    torch.testing.assert_close(member.p_yes(frames, texts), torch.tensor(expected, dtype=torch.float32))
    for entry, message in [("my_scorer:wrong_shape", r"returned shape \(2,\) for 3 frames x 2 captions"),
                           ("my_scorer:out_of_range", r"outside \[0, 1\] \(min 2.0")]:
        with pytest.raises(MemberError, match=message):
            load_member(MemberSpec(name="mine", kind="external", model=entry)).p_yes(frames, texts)
    for entry in ("my_scorer:missing", "no_such_module:make", "my_scorer"):
        with pytest.raises(MemberError, match=f"cannot load the external scorer '{entry}'"):
            load_member(MemberSpec(name="mine", kind="external", model=entry))


def test_ensemble_mean_by_hand():
    per_member = {"a": torch.tensor([[0.2, 0.4], [0.6, 0.8]]), "b": torch.tensor([[0.1, 0.0], [0.1, 0.0], [0.4, 0.3]])}
    # a: frame means (0.4, 0.6); b: (0.2, 0.1); member mean: (0.3, 0.35)
    torch.testing.assert_close(ensemble_mean(per_member), torch.tensor([0.3, 0.35]))
