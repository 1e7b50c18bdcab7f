"""A classification head over mean-pooled token states, registered as an adapters custom head.

XLM-R-style encoders are fine-tuned from their first token; encoders trained contrastively with
mean pooling (multilingual-e5) carry little in that token, and a frozen one then sits on a loss
plateau at ln(#labels) for a long time. `model.classifier_pooling: mean` selects this head."""
from __future__ import annotations

from adapters.heads import ClassificationHead

MEAN_POOLED = "mean_pooled_classification"


class MeanPooledClassificationHead(ClassificationHead):
    def __init__(self, model, head_name, **kwargs):
        super().__init__(model, head_name, **kwargs)
        self.config["head_type"] = MEAN_POOLED  # so save_head / load_head round-trip to this class

    def forward(self, outputs, cls_output=None, attention_mask=None, return_dict=False, **kwargs):
        if cls_output is None:
            hidden = outputs[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            cls_output = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return super().forward(outputs, cls_output, attention_mask, return_dict, **kwargs)


def register_heads(model) -> None:
    """Make our custom heads known to a model (needed before loading a saved one)."""
    model.register_custom_head(MEAN_POOLED, MeanPooledClassificationHead)
