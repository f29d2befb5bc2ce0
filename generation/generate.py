"""accelerate launch generation/generate.py --config generation/configs/<backend>.yaml [--shard i/N] [key=value ...]

Text-to-video clips for every negative caption; see synvita/generators/job.py for resume and sharding.
"""

import sys

from synvita.generators.job import main

if __name__ == "__main__":
    sys.exit(main())
