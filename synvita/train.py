"""accelerate launch -m synvita.train --config NAME_OR_YAML [key=value ...]

Training from an installed package (no checkout needed): the same as `synvita train`, once per
process. Shipped configs go by name (`synvita configs list`), e.g. `--config video_llava/synvita`.
"""

import sys

from synvita.training.recipe import main

if __name__ == "__main__":
    sys.exit(main())
