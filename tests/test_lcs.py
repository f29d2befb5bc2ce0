import pytest

from synvita.text.lcs import caption_keep_token_mask, shared_spans


def kept(text, other):
    return [text[a:b] for a, b in shared_spans(text, other)]


def dp_lcs_len(a, b):
    """Textbook O(n*m) dynamic programme, independent of rapidfuzz."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


# (misalignment, t^r, t^s, words of t^r kept in t'), worked out by hand.
CASES = [
    ("action", "A man opens the door.", "A man closes the door.", ["A", "man", "the", "door"]),
    ("attribute", "A red car parks near a tree", "A blue car parks near a tree",
     ["A", "car", "parks", "near", "a", "tree"]),
    ("object", "A dog chases a ball.", "A dog chases a cat.", ["A", "dog", "chases", "a"]),
    ("count", "Two people jump into the pool", "Three people jump into the pool",
     ["people", "jump", "into", "the", "pool"]),
    ("relation", "The cup is on the table", "The cup is under the table", ["The", "cup", "is", "the", "table"]),
    # Only one order survives: "a person opens the door" (5 words) beats "a person sits down" (4).
    ("flip", "A person opens the door and then sits down", "A person sits down and then opens the door",
     ["A", "person", "opens", "the", "door"]),
    ("hallucination", "A woman rides a bike", "A woman rides a bike while a dog barks",
     ["A", "woman", "rides", "a", "bike"]),
]


@pytest.mark.parametrize("kind, real, syn, expected", CASES, ids=[c[0] for c in CASES])
def test_each_misalignment(kind, real, syn, expected):
    assert kept(real, syn) == expected
    assert len(shared_spans(syn, real)) == dp_lcs_len(real.lower().rstrip(".").split(), syn.lower().rstrip(".").split())


def test_hallucination_seen_from_the_longer_caption():
    assert kept("A woman rides a bike while a dog barks", "A woman rides a bike") == ["A", "woman", "rides", "a", "bike"]


def test_edge_cases():
    assert shared_spans("Dogs bark", "Cats meow") == []
    assert shared_spans("", "anything") == [] and shared_spans("...", "...") == []
    text = "The man's left-hand glove, then: the hat!"
    assert kept(text, text) == ["The", "man's", "left-hand", "glove", "then", "the", "hat"]
    # Case and punctuation do not matter; spans never include punctuation.
    assert shared_spans("Hello, world!", "hello world") == [(0, 5), (7, 12)]


def test_token_mask_from_offsets():
    prompt = 'USER: <video> Does this video entail the description: "A man opens the door."? ASSISTANT:'
    caption = "A man opens the door."
    start = prompt.index(caption)
    end = start + len(caption)
    spans = shared_spans(caption, "A man closes the door.")

    # Offsets as a sentencepiece tokenizer gives them: leading-space pieces, fused punctuation, specials.
    pieces = ["<s>", "USER:", " <video>", " Does", ' description: "', "A", " man", " op", "ens", " the",
              " door.", '"?', " ASSISTANT:"]
    offsets, pos = [(0, 0)], 0
    for piece in pieces[1:]:
        pos = prompt.index(piece, pos)
        offsets.append((pos, pos + len(piece)))
        pos += len(piece)
    mask = caption_keep_token_mask(offsets, start, end, spans)
    hidden = [p for p, keep in zip(pieces, mask) if not keep]
    assert hidden == [" op", "ens"]
    # The opening quote token touches the caption only by its quote: it stays (template text).
    assert caption_keep_token_mask(offsets, start, end, []) == [
        p not in {"A", " man", " op", "ens", " the", " door."} for p in pieces
    ]
