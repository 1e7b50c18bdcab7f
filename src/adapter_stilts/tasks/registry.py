"""Tasks are registered data: a name, a family, labels, languages and two loaders (local files in
the dataset's native format, and the Hugging Face Hub).

Layering: the catalog (tasks/catalog/) imports the registry and registers into it; the registry
never imports the catalog. Look tasks up by name with
tasks/lookup.py (`get_task`, `all_tasks`), which loads the catalog first."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# A loader returns the examples of one split in one language; `root` is the local data folder.
LocalLoader = Callable[[Path, str, str], list[dict]]
HubLoader = Callable[[str, str], list[dict]]
LanguageScanner = Callable[[Path], tuple[str, ...]]
# the split of a retrieval task whose queries search one shared candidate set (LAReQA, Mewsli-X): that
# set, the same for every language, loaded once (the loaders' language argument is then ignored)
POOL_SPLIT = "pool"


@dataclass(frozen=True)
class Task:
    name: str
    family: str  # classification | tagging | multiple_choice | extractive_qa | retrieval
    role: str  # intermediate | target
    metric: str  # the key of the family's scores that selects checkpoints and heads tables
    description: str
    load_local: LocalLoader
    load_hub: HubLoader
    local_languages: LanguageScanner  # test languages whose files are present under root
    languages: tuple[str, ...] = ()  # the benchmark's default test languages
    labels: tuple[str, ...] = ()  # empty: the label set is read from the training data (CCG)
    train_language: str = "en"
    splits: tuple[str, ...] = ("train", "dev", "test")
    notes: dict = field(default_factory=dict)
    # a target trained on another registered task's data (xquad, mlqa: "squad"): its checkpoints are
    # selected with that task's metric on English dev, and targets with the same train_data and
    # settings share one trained target per intermediate setup (XTREME trains once on SQuAD)
    train_data: str = ""

    @property
    def trains(self) -> bool:
        return self.family != "retrieval"

    @property
    def has_translations(self) -> bool:
        """An intermediate task with training data in more languages than its own (translate-train)."""
        return self.role == "intermediate" and len(self.languages) > 1


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is registered twice")
    TASKS[task.name] = task
    return task
