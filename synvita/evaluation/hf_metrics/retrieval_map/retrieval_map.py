"""Text-to-video retrieval mAP and R@1/5/10, published protocol and tie-aware, for HF `evaluate`.

    evaluate.load("synvita/evaluation/hf_metrics/retrieval_map").compute(
        predictions=scores, references=relevant, query_ids=captions, candidate_ids=video_paths)

Candidates are put in the order of their ids before ranking, as VideoCon's calc_ssv2.py orders
them by video path; pass `group_size=216` (SSv2-Temporal) to drop queries with another count.
"""

import evaluate

from synvita.evaluation.benchmarks import retrieval_from_rows
from synvita.evaluation.hf_metrics import metric_info


class RetrievalMap(evaluate.Metric):
    def _info(self):
        return metric_info(
            "Per-query AP (uninterpolated), mean over queries, and R@k, in percent; "
            "*_tie_aware: sklearn AP and the exact expectation under random tie order.",
            "one row per (query, candidate): predictions (score), references (1 relevant), query_ids, candidate_ids",
            predictions=float, references=int, query_ids=str, candidate_ids=str,
        )

    def _compute(self, predictions, references, query_ids, candidate_ids, group_size=None):
        return retrieval_from_rows(query_ids, candidate_ids, references, predictions, group_size)
