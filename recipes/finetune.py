"""accelerate launch recipes/finetune.py --config recipes/configs/<family>/<name>.yaml [key=value ...]

Fine-tunes a video LMM with LoRA on SynViTA's objective L_real + L_syn^w + λ_scr·L_scr^w (or the
VideoCon baseline, L_real only), as the config says. Multi-GPU:

    accelerate launch --config_file recipes/configs/accelerate/ddp.yaml recipes/finetune.py \
        --config recipes/configs/video_llava/synvita.yaml

ZeRO-2 / ZeRO-3: `--config_file recipes/configs/accelerate/zero2.yaml` (or zero3.yaml). Resume a killed
run with `resume_from=latest`. Everything lives in synvita.training; this file only parses argv.
"""

import sys

from synvita.training.recipe import main

if __name__ == "__main__":
    sys.exit(main())
