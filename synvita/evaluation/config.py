"""`EvalConfig`: the settings of one evaluation, loaded like every stage's (YAML plus `key=value`).

`synvita evaluate --config eval/videocon-llm annotations=ANN model=M out=OUT.json` and the flags of
`synvita evaluate --help` fill the same fields; the flags are the command line's spelling of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from synvita.data.benchmarks import BENCHMARKS
from synvita.jobs import parse_shard


@dataclass
class EvalConfig:
    benchmark: str  # a name in synvita.data.benchmarks.BENCHMARKS
    annotations: Path  # folder with the benchmark's published files (`synvita data download`)
    out: Path  # metrics JSON to write
    model: str | None = None  # video LMM to score with: hub id or local folder
    from_predictions: Path | None = None  # score nothing: read videopath,caption,entailment[,pos,neg] rows
    adapter: str | None = None  # PEFT folder or VideoCon's Owl-Con layout, applied to `model`
    video_root: Path | None = None  # where the benchmark's videos are (with `model`)
    predictions: Path | None = None  # predictions CSV to write/resume (default: OUT.predictions.csv)
    frames: int | None = None  # uniform/segments frames (default: the model family's)
    sampler: Literal["uniform", "segments", "fps", "all"] | None = None  # default: the model family's
    fps: float | None = None  # frames per second for sampler fps
    batch_size: int = 16  # captions per forward pass
    videos_per_pass: int = 1  # videos whose prompt prefixes run through the LLM together
    feature_cache: Path | None = None  # folder keeping each video's vision features for later runs
    dtype: str = "auto"  # float32, bfloat16, float16 or auto (see `synvita evaluate --help`)
    device: str | None = None
    quantization: Literal["4bit", "8bit"] | None = None
    seed: int = 0
    shard: str | None = None  # I/N: score this share into its own journal and stop (SLURM arrays)

    def __post_init__(self):
        BENCHMARKS.get(self.benchmark)
        if (self.model is None) == (self.from_predictions is None):
            raise ValueError("model / from_predictions: give exactly one (--model or --from-predictions)")
        if self.model and self.video_root is None:
            raise ValueError("--model needs --video-root (the folder holding the benchmark's videos)")
        if self.adapter and not self.model:
            raise ValueError("--adapter needs --model (the base model it was trained on)")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.videos_per_pass < 1:
            raise ValueError("videos_per_pass must be >= 1")
        if self.shard is not None:
            parse_shard(self.shard)
