"""CLIP-FlanT5: the published state-dict layout at the XXL config, the score against the reference's
recipe worked step by step, padding to square, and loading pickled shards in the published layout."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from synvita.scoring.errors import MemberError
from synvita.scoring.members import MemberSpec, load_member
from synvita.tiny.members import build_clip_flant5

TEXTS = ["a man is holding two large dumbbells", "a dog", "the red ball rolls left then right"]
# The reference's chat prompt (t2v_metrics' "t5_chat" style), written out here independently.
PROMPT = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the user's questions. USER: <image>\n"
          'Does this figure show "{}"? Please answer yes or no. ASSISTANT: ')


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_clip_flant5(tmp_path_factory.mktemp("clip-flant5") / "model")


@pytest.fixture(scope="module")
def member(tiny_dir):
    return load_member(MemberSpec(name="cf5", kind="clip-flant5", model=str(tiny_dir), batch_size=4))


@pytest.fixture(scope="module")
def frames():
    # plain colours and a gradient in three aspect ratios: different enough that the tiny CLIP tells them apart
    ramp = np.linspace(0, 255, 40, dtype=np.uint8)[None, :, None].repeat(18, 0).repeat(3, 2)
    return [np.zeros((24, 36, 3), np.uint8), np.full((40, 20, 3), 255, np.uint8), ramp]


def test_state_dict_matches_published_xxl(shared_data):
    from synvita.models.clip_flant5 import CLIPFlanT5Config, CLIPFlanT5ForConditionalGeneration

    reference = json.loads((shared_data / "reference" / "clip_flant5_xxl.state_dict.json").read_text())
    text = next(v for k, v in reference["_source"]["config"].items() if k.startswith("text"))
    with torch.device("meta"):  # the vision tower and projector come from the config's defaults
        model = CLIPFlanT5ForConditionalGeneration(CLIPFlanT5Config(**text))
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    expected = {k: v for k, v in reference.items() if not k.startswith("_")}
    missing, extra = sorted(expected.keys() - ours.keys()), sorted(ours.keys() - expected.keys())
    # _notes: the reference's top-level `embed_tokens` is one more alias of `shared` (the loader
    # ignores it in a checkpoint); position_ids are a non-persistent buffer on both sides.
    assert (missing, extra) == (["embed_tokens.weight"], []), f"missing {missing}, extra {extra}"
    assert all(reference["_aliases"][k] == "shared.weight" for k in missing)
    wrong = {k: (ours[k], expected[k]) for k in ours if ours[k] != expected[k]}
    assert not wrong, f"shapes differ (ours, reference): {wrong}"
    assert len(ours) == reference["_stats"]["state_dict_entries"] - len(missing)
    params = list(model.parameters())  # unique tensors
    assert (len(params), sum(p.numel() for p in params)) == (
        reference["_stats"]["parameter_tensors_unique"], reference["_stats"]["parameters_total_unique"])
    # the other aliases are tied, and FlanT5 keeps its own output head
    assert model.encoder.embed_tokens.weight is model.shared.weight is model.decoder.embed_tokens.weight
    assert model.lm_head.weight is not model.shared.weight
    assert model.config.vision_config.hidden_act == "quick_gelu"


def _reference_score(member, frame: np.ndarray, caption: str) -> float:
    """The reference's recipe with the member's weights: pad the frame to a square of CLIP's mean
    colour, CLIP's penultimate patch features through the two-layer MLP, spliced into the token
    embeddings where the prompt has <image>, then exp(-mean cross-entropy) of the label "Yes" </s>."""
    from transformers import T5ForConditionalGeneration

    model, tok, processor = member.model, member.tokenizer, member.image_processor
    h, w, _ = frame.shape
    side = max(h, w)
    square = np.empty((side, side, 3), np.uint8)
    square[:] = [int(m * 255) for m in processor.image_mean]
    top, left = (side - h) // 2, (side - w) // 2
    square[top:top + h, left:left + w] = frame
    pixels = processor(images=[square], do_pad=False, return_tensors="pt")["pixel_values"]
    clip = model.vision_tower.vision_tower["vision_model"]
    patches = clip(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    first, second = model.mm_projector[0], model.mm_projector[2]
    image = F.linear(F.gelu(F.linear(patches, first.weight, first.bias)), second.weight, second.bias)
    before, after = PROMPT.format(caption).split("<image>")
    embed = model.get_input_embeddings()
    inputs = torch.cat([embed(torch.tensor([tok(before).input_ids])), image,
                        embed(torch.tensor([tok(after).input_ids]))], 1)
    labels = torch.tensor([tok("Yes").input_ids])
    loss = T5ForConditionalGeneration.forward(model, inputs_embeds=inputs, labels=labels).loss
    return float(torch.exp(-loss.double()))


def test_score_follows_the_reference_recipe(tiny_dir, member, frames):
    from safetensors.torch import load_file

    tok, model = member.tokenizer, member.model
    assert tok.convert_ids_to_tokens(tok("Yes").input_ids) == ["▁Yes", "</s>"]
    # the stored vocabulary has 28 rows past the tokenizer (as FlanT5's 32128 past 32100); like the
    # reference, the member keeps the tokenizer's rows of both (untied) matrices
    stored = load_file(tiny_dir / "model.safetensors")
    assert stored["lm_head.weight"].shape[0] == len(tok) + 28
    for name in ("lm_head.weight", "shared.weight"):
        assert torch.equal(model.get_parameter(name), stored[name][:len(tok)])
    assert model.lm_head.weight is not model.shared.weight
    with torch.no_grad():
        p = member.p_yes(frames, TEXTS)  # batches of 4 pairs: padded prompts, frames shared by captions
        expected = torch.tensor([[_reference_score(member, f, t) for t in TEXTS] for f in frames], dtype=torch.float64)
    torch.testing.assert_close(p.double(), expected, rtol=1e-5, atol=0)
    spread = lambda x: float((x.max() - x.min()) / x.mean())
    assert min(spread(p[:, j]) for j in range(len(TEXTS))) > 0.02  # every caption's score moves with the frame
    assert min(spread(p[i]) for i in range(len(frames))) > 0.02  # and every frame's with the caption


EDGE_CAPTIONS = ['"quoted" words open it', " a leading space", "café naïve 日本語", 'it ends with a quote"']


def test_edge_case_captions(member, frames):
    with torch.no_grad():
        expected = [[_reference_score(member, f, t) for t in EDGE_CAPTIONS] for f in frames[:2]]
    torch.testing.assert_close(member.p_yes(frames[:2], EDGE_CAPTIONS).double(),
                               torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=0)
    with pytest.raises(MemberError, match="holds the image placeholder <image>"):
        member.p_yes(frames[:1], ["a <image> here"])


def test_image_placeholder_with_either_padding_side(member, frames):
    model, tok = member.model, member.tokenizer
    rows = [member.encode(t) for t in TEXTS]
    features = model.get_image_features(member.image_processor(images=frames, return_tensors="pt")["pixel_values"])
    decoder = torch.zeros((1, 1), dtype=torch.long)
    with torch.no_grad():
        single = [model(input_ids=torch.tensor([r]), image_features=features[i:i + 1], decoder_input_ids=decoder).logits
                  for i, r in enumerate(rows)]
        width = max(map(len, rows))
        for left in (True, False):
            fill = lambda r, value: [value] * (width - len(r)) + r if left else r + [value] * (width - len(r))
            ids = torch.tensor([fill(r, tok.pad_token_id) for r in rows])
            mask = torch.tensor([fill([1] * len(r), 0) for r in rows])
            batched = model(input_ids=ids, attention_mask=mask, image_features=features,
                            decoder_input_ids=decoder.expand(3, -1)).logits
            torch.testing.assert_close(batched, torch.cat(single), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="exactly one image placeholder"):
        model(input_ids=torch.tensor([rows[0] + rows[0]]), image_features=features[:1], decoder_input_ids=decoder)


def _published_layout(source, out, state_dict):
    """A folder like the released ones: config.json, pickled .bin shards with their index (the
    reference's `embed_tokens` alias and CLIP's old position_ids buffer included), the tokenizer."""
    out.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(source / name, out / name)
    state = dict(state_dict)
    state["embed_tokens.weight"] = state["shared.weight"]
    if any(k.startswith("vision_tower.") for k in state):
        state["vision_tower.vision_tower.vision_model.embeddings.position_ids"] = torch.arange(5)[None]
    keys = sorted(state)
    shards = {"pytorch_model-00001-of-00002.bin": keys[::2], "pytorch_model-00002-of-00002.bin": keys[1::2]}
    for file, names in shards.items():
        torch.save({k: state[k] for k in names}, out / file)
    index = {"metadata": {}, "weight_map": {k: f for f, names in shards.items() for k in names}}
    (out / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    return out


class NotATensor:
    pass


def test_loads_pickled_shards_in_the_published_layout(tiny_dir, member, frames, tmp_path):
    from safetensors.torch import load_file
    from transformers import CLIPConfig, CLIPModel

    weights = load_file(tiny_dir / "model.safetensors")
    assert any(re.match(r"vision_tower\.vision_tower\.vision_model\.", k) for k in weights)
    expected = member.p_yes(frames, TEXTS)
    folder = _published_layout(tiny_dir, tmp_path / "published", weights)
    from_bin = load_member(MemberSpec(name="bin", kind="clip-flant5", model=str(folder), batch_size=4))
    torch.testing.assert_close(from_bin.p_yes(frames, TEXTS), expected, rtol=0, atol=0)

    # Shards without the vision tower: its weights come from the full CLIP checkpoint (vision and
    # text towers, keys `vision_model.*`) that `mm_vision_tower` names, as the reference loads it.
    vision = member.model.config.vision_config
    clip = CLIPModel(CLIPConfig(vision_config=vision.to_dict(), text_config=dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=50),
        projection_dim=8))
    clip.vision_model.load_state_dict(member.model.vision_tower.vision_tower["vision_model"].state_dict())
    clip.save_pretrained(tmp_path / "clip", safe_serialization=False)
    text_only = {k: v for k, v in weights.items() if not k.startswith("vision_tower.")}
    folder = _published_layout(tiny_dir, tmp_path / "no-tower", text_only)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "mm_vision_tower": str(tmp_path / "clip")}))
    split = load_member(MemberSpec(name="split", kind="clip-flant5", model=str(folder), batch_size=4))
    torch.testing.assert_close(split.p_yes(frames, TEXTS), expected, rtol=0, atol=0)

    # A pickle that holds anything but tensors is refused (weights_only=True), not executed.
    bad = tmp_path / "bad"
    _published_layout(tiny_dir, bad, weights)
    torch.save({"shared.weight": weights["shared.weight"], "x": NotATensor()}, bad / "pytorch_model-00001-of-00002.bin")
    with pytest.raises(MemberError, match="holds objects other than tensors .*test_clip_flant5.NotATensor"):
        load_member(MemberSpec(name="bad", kind="clip-flant5", model=str(bad)))
