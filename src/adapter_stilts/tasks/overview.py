"""`python run.py tasks`: every registered task with its kind, its benchmark languages and what of
it can run offline (probed by actually reading the local files, so the answer cannot drift from
the loaders)."""
from __future__ import annotations

from dataclasses import dataclass

from .data import DataSource
from .lookup import all_tasks
from .readers import DataError
from .registry import Task


@dataclass
class TaskRow:
    task: Task
    xtreme: int  # languages in XTREME (0 = not part of it)
    xtreme_r: int
    offline_languages: tuple[str, ...]
    offline_train: str  # "yes" | "-" (no training data by design) | the reason it is missing

    @property
    def offline(self) -> str:
        if self.offline_train not in ("yes", "-"):
            return "no train data"
        if self.task.role == "target" and not self.offline_languages:
            return "no test data"
        return "yes"


def probe_train(task: Task, source: DataSource) -> str:
    """"yes" when the task's English training split reads, "-" for tasks without one, else why not."""
    if not task.trains:
        return "-"
    try:
        return "yes" if task.load_local(source.root, "train", task.train_language) else "empty"
    except (DataError, OSError) as e:
        return str(e).split(":")[0][:60]


def task_rows(source: DataSource) -> list[TaskRow]:
    from .benchmarks import BENCHMARKS

    rows = []
    for t in all_tasks():
        langs = t.local_languages(source.root) if source.kind == "local" else ()
        rows.append(TaskRow(t, len(BENCHMARKS["xtreme"].get(t.name, ())), len(BENCHMARKS["xtreme-r"].get(t.name, ())),
                            tuple(langs), probe_train(t, source) if source.kind == "local" else "?"))
    return rows


def format_rows(rows: list[TaskRow], source: DataSource) -> str:
    w = max([14, *(len(r.task.name) for r in rows)])
    head = (f"{'task':{w}} {'kind':15} {'role':12} {'metric':14} {'XTREME':>6} {'XTR-R':>5} {'offline':14} "
            f"languages with local data")
    lines = [f"Data: {source.describe()}", head, "-" * len(head)]
    for r in rows:
        t = r.task
        langs = " ".join(r.offline_languages) if len(r.offline_languages) <= 16 else \
            f"{len(r.offline_languages)}: " + " ".join(r.offline_languages[:16]) + " ..."
        lines.append(f"{t.name:{w}} {t.family:15} {t.role:12} {t.metric:14} {r.xtreme or '-':>6} "
                     f"{r.xtreme_r or '-':>5} {r.offline:14} {langs}")
    # what the translated data is says whether a target is still zero-shot: print it with the rows
    translated = [r.task for r in rows if r.task.has_translations]
    if translated:
        lines += ["", "Translated training data (intermediate.tasks.<task>.languages; languages above: English and "
                      "its translations):"] + [f"  {t.name}: {t.description}" for t in translated]
    # where the offline data differs from the benchmark's (or is absent by design), the task says how
    noted = [r.task for r in rows if r.task.notes.get("offline")]
    if noted:
        lines += ["", "Offline notes:"] + [f"  {t.name}: {t.notes['offline']}" for t in noted]
    return "\n".join(lines)
