"""The registered tasks, one module per group: where their data lives (the local layout of
../shared/data, Hub ids) and how it is read. Importing this package registers them all."""
from . import lareqa, mewslix, mlm, multiple_choice, nli, qa, retrieval, sentence, tagging, translated  # noqa: F401
