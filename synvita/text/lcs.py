"""Shared semantics t': the word-level longest common subsequence of t^r and t^s, as char spans.

t' is not a new string: the scorer keeps the caption's tokens and hides (attention mask 0) the ones
outside the LCS, so positions and the chat template stay exactly those of the real caption.
Words are compared case-insensitively with punctuation stripped ("Door." == "door"); a word is
a run of letters/digits with inner apostrophes or hyphens ("man's", "left-hand"), so punctuation
is never part of a kept span. rapidfuzz's LCSseq works on any sequence of hashables, here word lists.
"""

from __future__ import annotations

import re
from typing import Sequence

from rapidfuzz.distance import LCSseq

_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")


def words(text: str) -> list[tuple[str, int, int]]:
    """(normalised word, start, end) for each word of `text`, in order."""
    return [(m.group().lower().replace("’", "'"), m.start(), m.end()) for m in _WORD.finditer(text)]


def shared_spans(text: str, other: str) -> list[tuple[int, int]]:
    """Char spans in `text` of the words in the word-level LCS of `text` and `other`.

    Empty when the captions share no word; every word of `text` when they are equal up to case and
    punctuation. When several LCSs exist, rapidfuzz's choice is used (deterministic).
    """
    mine, theirs = words(text), words(other)
    ops = LCSseq.opcodes([w for w, _, _ in mine], [w for w, _, _ in theirs])
    return [mine[i][1:] for op in ops if op.tag == "equal" for i in range(op.src_start, op.src_end)]


def caption_keep_token_mask(
    offsets: Sequence[tuple[int, int]],
    caption_start: int,
    caption_end: int,
    keep_spans: Sequence[tuple[int, int]],
) -> list[bool]:
    """Which tokens stay visible when the caption is reduced to `keep_spans`.

    `offsets` are the tokenizer's (start, end) char offsets into the full prompt; the caption
    occupies prompt[caption_start:caption_end] and `keep_spans` are relative to the caption.
    Tokens outside the caption (template, video tokens, special tokens with empty offsets) are
    always kept. A caption token is kept when it overlaps a kept word, so a token fusing a word
    with its punctuation or leading space ("▁door", "door.") follows the word.
    """
    spans = [(caption_start + a, caption_start + b) for a, b in keep_spans]
    mask = []
    for start, end in offsets:
        in_caption = start < end and start < caption_end and end > caption_start
        mask.append(not in_caption or any(start < b and end > a for a, b in spans))
    return mask
