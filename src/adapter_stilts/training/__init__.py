"""Training a phase: length-grouped batching, multi-task sampling, the DeepSpeed engine, the loop,
checkpoints. Layering: training sits above evaluation (the loop selects checkpoints by scoring the
dev set with evaluation.predict); evaluation never imports training."""
