"""accelerate launch generation/score.py --config generation/configs/score_<name>.yaml [--shard i/N] [key=value ...]

VQAScore ensemble scores and weights for every synthetic clip; see synvita/scoring/job.py.
"""

import sys

from synvita.scoring.job import main

if __name__ == "__main__":
    sys.exit(main())
