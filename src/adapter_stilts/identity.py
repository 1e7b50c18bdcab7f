"""What a result IS, as data: the model (name and number of layers), the mode, how the
intermediate tasks were used (strategy), the sorted set of intermediate tasks and k = its size,
the intermediate data budget (training examples), the languages of the intermediate data where it
was translated, the intermediate and target seeds, and the target task. It is written as
machine-readable MLflow tags (`id.*`) on every phase run and is the key of every table; the
display name (anli_plus, multitask3, ...) is derived from it and never used as a key, so two
different 3-task subsets are two rows, and rows sort by k numerically."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

TAG_PREFIX = "id."
NO_TASKS = "none"  # the strategy (and display name) of the no-intermediate baseline


@dataclass(frozen=True)
class ResultIdentity:
    model: str
    model_layers: int
    mode: str  # adapters | full
    strategy: str  # none | each | multitask | average | fusion | given | untrained
    intermediate_tasks: tuple[str, ...] = ()  # sorted
    intermediate_examples: int = 0  # the intermediate data budget: training examples over all its tasks
    intermediate_seed: int | None = None  # None: no intermediate phase, or a given adapter
    target_seed: int | None = None  # None: an intermediate result
    target_task: str = ""  # "": an intermediate result
    # a hash of how the target was trained and scored (its sizes and languages, the training
    # settings, the eval seed): results of one setup under two protocols are never paired or merged
    target_settings: str = ""
    # the languages of the intermediate training data (sorted) where any of it was translated
    # (translate-train); () = each task in its own language, English: every result made before
    intermediate_languages: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "intermediate_tasks", tuple(sorted(self.intermediate_tasks)))
        object.__setattr__(self, "intermediate_languages", tuple(sorted(self.intermediate_languages)))

    @property
    def k(self) -> int:
        return len(self.intermediate_tasks)

    @property
    def display_name(self) -> str:
        if self.k == 0:  # none, or the untrained-adapter control
            return self.strategy
        if self.k == 1 and self.strategy != "given":
            return self.intermediate_tasks[0]
        return f"{self.strategy}{self.k}"

    def setup(self) -> ResultIdentity:
        """The row this result belongs to: everything but the seeds and the target task."""
        return replace(self, intermediate_seed=None, target_seed=None, target_task="", target_settings="")

    def baseline(self) -> ResultIdentity:
        """The no-intermediate row of the same model and mode (what a gain is measured against)."""
        return ResultIdentity(self.model, self.model_layers, self.mode, NO_TASKS)

    def sort_key(self) -> tuple:
        """Model, layers, mode, then the baseline first, k numerically, strategy, tasks."""
        return (self.model, self.model_layers, self.mode, self.strategy != NO_TASKS, self.k, self.strategy,
                self.intermediate_tasks, self.intermediate_examples, self.intermediate_languages)

    def tags(self) -> dict[str, str]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[TAG_PREFIX + f.name] = (",".join(value) if isinstance(value, tuple)
                                        else "" if value is None else str(value))
        out[TAG_PREFIX + "k"] = str(self.k)
        out[TAG_PREFIX + "display_name"] = self.display_name
        return out

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> ResultIdentity:
        """The identity written by `tags()`; KeyError names a missing tag."""
        def get(name: str) -> str:
            return tags[TAG_PREFIX + name]

        def seed(name: str) -> int | None:
            return int(get(name)) if get(name) != "" else None

        return cls(model=get("model"), model_layers=int(get("model_layers")), mode=get("mode"),
                   strategy=get("strategy"),
                   intermediate_tasks=tuple(t for t in get("intermediate_tasks").split(",") if t),
                   intermediate_examples=int(get("intermediate_examples")), intermediate_seed=seed("intermediate_seed"),
                   target_seed=seed("target_seed"), target_task=get("target_task"),
                   target_settings=tags.get(TAG_PREFIX + "target_settings", ""),
                   # runs tagged before translated data existed: English only
                   intermediate_languages=tuple(t for t in tags.get(TAG_PREFIX + "intermediate_languages", "")
                                                .split(",") if t))

    def columns(self) -> dict[str, Any]:
        """The identity as table columns (tasks as one sorted, comma-joined string)."""
        row = asdict(self)
        row["intermediate_tasks"] = ",".join(self.intermediate_tasks)
        row["intermediate_languages"] = ",".join(self.intermediate_languages)
        row["k"] = self.k
        row["setup"] = self.display_name
        return row


IDENTITY_COLUMNS = ("model", "model_layers", "mode", "strategy", "intermediate_tasks", "k", "intermediate_examples",
                    "intermediate_languages", "intermediate_seed", "target_seed", "target_task", "target_settings",
                    "setup")
ROW_COLUMNS = ("model", "model_layers", "mode", "strategy", "intermediate_tasks", "k", "intermediate_examples",
               "intermediate_languages")
# identity columns added after results tables were written, and the value such a table means by their absence
LATER_COLUMNS = {"intermediate_languages": ""}
