"""Metric scripts for the HF `evaluate` library: `evaluate.load("<this folder>/<name>")`, offline.

Each script is a thin `evaluate.Metric` around `synvita.evaluation`'s functions.
"""

import datasets
import evaluate

CITATION = "Bansal et al., VideoCon: Robust Video-Language Alignment via Contrast Captions, CVPR 2024."
TYPES = {float: datasets.Value("float64"), int: datasets.Value("int64"), str: datasets.Value("string")}


def metric_info(description: str, inputs_description: str, **columns: type) -> evaluate.MetricInfo:
    """MetricInfo with one flat feature per column (predictions, references and any ids)."""
    features = datasets.Features({name: TYPES[kind] for name, kind in columns.items()})
    return evaluate.MetricInfo(description=description, citation=CITATION,
                               inputs_description=inputs_description, features=features)
