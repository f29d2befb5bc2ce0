"""The processor of mPLUG-Owl video: the authors' frames, normalisation and conversation template.

- Frames: the authors' reader resizes every frame straight to 224x224 (no aspect-preserving crop)
  and CLIP's image processor then normalises them with CLIP's mean and std; the model takes 32
  frames in SynViTA (`FrameSampler("uniform", 32)` upstream of the processor picks them).
- Prompt: mPLUG-Owl's conversation template, the one VideoCon wraps its question in:
  a system sentence, `Human: <|video|>`, `Human: <question>`, then `AI: `.
- A video is 65 tokens in the LLM (64 abstractor queries + the end-of-video embedding), so the
  processor writes the `<|video|>` placeholder 65 times and the model puts the features there.
"""

from __future__ import annotations

from transformers import BatchFeature
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling
from transformers.processing_utils import ProcessorMixin
from transformers.video_processing_utils import BaseVideoProcessor

from synvita.text.prompts import MPLUG_OWL_SYSTEM

VIDEO_TOKEN = "<|video|>"
# Each content part of a user turn is its own `Human:` line, as in the authors' prompts. Newlines
# after a tag are written as {{ '\n' }}: the chat template's trim_blocks would drop a literal one.
CHAT_TEMPLATE = (
    MPLUG_OWL_SYSTEM + "\n"
    "{% for message in messages %}"
    "{% if message['content'] is string %}"
    "{% if message['role'] == 'user' %}Human: {% else %}AI: {% endif %}{{ message['content'] }}{{ '\\n' }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if message['role'] == 'user' %}Human: {% else %}AI: {% endif %}"
    "{% if c['type'] == 'video' %}" + VIDEO_TOKEN + "{% else %}{{ c['text'] }}{% endif %}{{ '\\n' }}"
    "{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}AI: {% endif %}"
)


def legacy_llama_tokenizer(llama):
    """LLaMA's tokenizer as mPLUG-Owl's processor used it, from a transformers `LlamaTokenizer`.

    The authors encode each piece of text around the video placeholder as its own sentencepiece
    sentence after a BOS, so every piece starts with "▁": the legacy Metaspace scheme "always" does
    the same on the whole prompt. The result is a plain tokenizers pipeline, because LlamaTokenizer
    rebuilds the non-legacy scheme when it is loaded again. Padding uses </s>, as their batching does.
    """
    from tokenizers import pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = llama.backend_tokenizer
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=llama.bos_token, eos_token=llama.eos_token,
                                   unk_token=llama.unk_token, pad_token=llama.eos_token)


class MplugOwlVideoVideoProcessor(BaseVideoProcessor):
    resample = PILImageResampling.BICUBIC
    size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = False
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    do_sample_frames = False


class MplugOwlVideoProcessor(ProcessorMixin):
    def __init__(self, video_processor=None, tokenizer=None, chat_template=None, video_token=VIDEO_TOKEN,
                 num_video_tokens=65, **kwargs):
        self.video_token = video_token
        self.num_video_tokens = num_video_tokens
        super().__init__(video_processor, tokenizer, chat_template=chat_template or CHAT_TEMPLATE)

    def __call__(self, images=None, text=None, videos=None, padding=False, return_tensors=None, video_metadata=None,
                 do_sample_frames=None, **kwargs):
        """Token ids (`kwargs` go to the tokenizer) and `pixel_values_videos` (B, T, C, H, W)."""
        if images is not None:
            raise ValueError("the mPLUG-Owl video processor takes videos, not images")
        data = {}
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            expanded = [t.replace(self.video_token, self.video_token * self.num_video_tokens) for t in texts]
            data.update(self.tokenizer(expanded, padding=padding, **kwargs))
        if videos is not None:
            data.update(self.video_processor(videos, video_metadata=video_metadata, do_sample_frames=do_sample_frames,
                                             return_tensors=return_tensors))
        return BatchFeature(data, tensor_type=return_tensors)
