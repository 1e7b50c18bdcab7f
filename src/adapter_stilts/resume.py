"""The progress of one experiment invocation, kept in `<output dir>/state.json`: its MLflow run ids
and which phases and target tasks are finished (with their results). Rerunning the same command
(same resolved config) after a crash picks up this file: finished units are skipped, the
unfinished one resumes from its last checkpoint, and logging continues in the same MLflow runs.
The state records its MLflow store: it is resumed only where its runs exist (a run killed in one
store, rerun against another, starts afresh there and leaves the old state for its own store)."""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import distributed as dist

log = logging.getLogger(__name__)
STATE = "state.json"


def config_key(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class RunState:
    folder: Path
    key: str
    parent_run_id: str | None = None
    finished: bool = False
    units: dict[str, dict] = field(default_factory=dict)
    tracking_uri: str = ""  # the MLflow store its runs are in ("" : written before stores were recorded)

    @classmethod
    def find_unfinished(cls, root: Path, key: str, tracking_uri: str,
                        run_exists: Callable[[str], bool]) -> tuple[RunState | None, list[RunState]]:
        """(the newest unfinished invocation of the same config under `root` whose parent run is in
        this MLflow store, the newer ones whose run is not: not resumable here)."""
        elsewhere = []
        for path in sorted(root.glob(f"*/{STATE}"), reverse=True):
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                log.warning("Ignoring unreadable %s", path)
                continue
            if data.get("key") != key or data.get("finished"):
                continue
            state = cls(path.parent, key, data.get("parent_run_id"), False, data.get("units", {}),
                        data.get("tracking_uri", ""))
            # run ids are unique: a run found here is this store's (however its URI was spelled)
            if state.parent_run_id and run_exists(state.parent_run_id):
                state.tracking_uri = tracking_uri  # an older state file learns its store
                return state, elsewhere
            elsewhere.append(state)
        return None, elsewhere

    def done(self, unit: str) -> dict | None:
        record = self.units.get(unit)
        return record if record and record.get("done") else None

    def run_id(self, unit: str) -> str | None:
        return self.units.get(unit, {}).get("run_id")

    def record(self, unit: str, **values) -> None:
        self.units.setdefault(unit, {}).update(values)
        self.save()

    def save(self) -> None:
        if not dist.is_main():
            return
        data = {"key": self.key, "parent_run_id": self.parent_run_id, "finished": self.finished,
                "tracking_uri": self.tracking_uri, "units": self.units}
        tmp = self.folder / (STATE + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.folder / STATE)  # atomic: a kill never leaves half a state file
