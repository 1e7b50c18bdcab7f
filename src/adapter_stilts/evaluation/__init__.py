"""Evaluation: batched inference, sentence embeddings, zero-shot scoring, retrieval, metrics and
aggregation. Layering: evaluation sits below training and never imports it (training's dev
selection uses evaluation.predict; the padding both share is tasks/collate.py)."""
