"""AUC-ROC of entailment scores (VideoCon protocol) for the HF `evaluate` library.

    evaluate.load("synvita/evaluation/hf_metrics/entailment_auc").compute(predictions=scores, references=labels)
"""

import evaluate

from synvita.evaluation.hf_metrics import metric_info
from synvita.evaluation.metrics import roc_auc


class EntailmentAuc(evaluate.Metric):
    def _info(self):
        return metric_info(
            "AUC-ROC (percent, scikit-learn) of P(entailed) scores against 1/0 labels.",
            "predictions: scores; references: 1 (entailed) or 0.",
            predictions=float, references=int,
        )

    def _compute(self, predictions, references):
        return {"auc": roc_auc(references, predictions)}
