"""ATP-Hard accuracy (the highest-scored of a question's options wins), overall, causal and
temporal, published protocol (first maximum) and tie-aware, for HF `evaluate`.

    evaluate.load("synvita/evaluation/hf_metrics/qa_accuracy").compute(
        predictions=scores, references=is_correct, question_ids=ids, question_types=types)

Rows are options in order; a type starting with C counts as causal, with T as temporal.
"""

import evaluate

from synvita.evaluation.benchmarks import qa_from_rows
from synvita.evaluation.hf_metrics import metric_info


class QaAccuracy(evaluate.Metric):
    def _info(self):
        return metric_info(
            "Accuracy (percent) of picking the highest-scored option; *_tie_aware: the expectation "
            "when tied maxima are broken at random.",
            "one row per option: predictions (score), references (1 on the correct option), "
            "question_ids, question_types (NExT-QA type, e.g. CW, TN)",
            predictions=float, references=int, question_ids=str, question_types=str,
        )

    def _compute(self, predictions, references, question_ids, question_types, group_size=None):
        return qa_from_rows(question_ids, question_types, references, predictions, group_size)
