"""mPLUG-Owl video (`MAGAer13/mplug-owl-llama-7b-video`) written on current transformers.

Importing this package registers its config, model and processors with the Auto classes under the
model_type `mplug_owl_video`, so `AutoModelForImageTextToText` / `AutoProcessor` load a converted
folder without `trust_remote_code` (`synvita.models.families.load_video_lmm` imports it for you).
"""

from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, AutoVideoProcessor

from synvita.models.mplug_owl.configuration import (
    MODEL_TYPE, MplugOwlVideoAbstractorConfig, MplugOwlVideoConfig, MplugOwlVideoVisionConfig,
)
from synvita.models.mplug_owl.modeling import MplugOwlVideoForConditionalGeneration
from synvita.models.mplug_owl.processing import MplugOwlVideoProcessor, MplugOwlVideoVideoProcessor

AutoConfig.register(MODEL_TYPE, MplugOwlVideoConfig, exist_ok=True)
AutoModelForImageTextToText.register(MplugOwlVideoConfig, MplugOwlVideoForConditionalGeneration, exist_ok=True)
AutoVideoProcessor.register(MplugOwlVideoConfig, MplugOwlVideoVideoProcessor, exist_ok=True)
AutoProcessor.register(MplugOwlVideoConfig, MplugOwlVideoProcessor, exist_ok=True)

__all__ = ["MODEL_TYPE", "MplugOwlVideoAbstractorConfig", "MplugOwlVideoConfig", "MplugOwlVideoForConditionalGeneration",
           "MplugOwlVideoProcessor", "MplugOwlVideoVideoProcessor", "MplugOwlVideoVisionConfig"]
