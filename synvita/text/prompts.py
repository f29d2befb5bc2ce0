"""Every prompt template of the suite: the questions put to video LMMs and VQA members, and the
conversations around them where a model's own chat template does not supply one.

`{text}` is the caption's slot in every template.
"""

from __future__ import annotations

import re

# VideoCon's entailment question: what video LMMs are asked, trained and evaluated on.
ENTAIL_QUESTION = 'Does this video entail the description: "{text}"?'
# VideoCon's feedback task: the explanation of a misalignment (the recipes' data.explanations).
EXPLAIN_QUESTION = 'What is the misalignment between this video and the description: "{text}"?'
# VQAScore's question to the image members, asked of each sampled frame.
VQA_QUESTION = 'Does this figure show "{text}"? Please answer yes or no.'
# The toy world's captioning prompt: the caption follows the question directly.
CAPTION_QUESTION = "Describe the video.{text}"

# mPLUG-Owl's conversation, and the whole prompt as VideoCon's SSv2 and ATP-Hard CSVs carry it.
MPLUG_OWL_SYSTEM = ("The following is a conversation between a curious human and AI assistant. The assistant gives "
                    "helpful, detailed, and polite answers to the user's questions.")
VIDEOCON_PROMPT = MPLUG_OWL_SYSTEM + "\nHuman: <|video|>\nHuman: " + ENTAIL_QUESTION + "\nAI: "

# CLIP-FlanT5's reference chat prompt ("t5_chat") around the question.
CLIP_FLANT5_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                      "The assistant gives helpful, detailed, and polite answers to the user's questions.")


def clip_flant5_prompt(question: str, image: str) -> str:
    return f"{CLIP_FLANT5_SYSTEM} USER: {image}\n{question} ASSISTANT: "


def slot_pattern(template: str) -> re.Pattern:
    """A pattern that finds `template` in a text and captures what fills its `{text}` slot."""
    before, after = template.split("{text}")
    return re.compile(re.escape(before) + "(.*)" + re.escape(after), re.S)
