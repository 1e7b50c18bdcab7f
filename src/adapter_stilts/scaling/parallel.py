"""`sweep --backend ray|local`: a study's cells run at once, each in its own process
(`python -m adapter_stilts cell ...`, or the DeepSpeed launcher when a cell has several ranks).

One dispatch loop for both backends; only where a cell's process starts differs:
- `local --jobs N`: N threads on this machine, each starting one cell process at a time;
- `ray`: one Ray task per cell with the CPUs and GPUs of `study.resources` (a Ray cluster from
  `--address`, else one started on this machine). Ray retries a task whose worker or node died.

A cell is safe to start twice (two sweeps, a retry): it runs under its claim in the shared cache
folder and checks the store again once it holds it (`sweep.run_cell`), so it is trained once and
a retry resumes from the dead attempt's state.json and checkpoints. Every cell logs to the MLflow
store of MLFLOW_TRACKING_URI (a tracking server on a cluster) and writes its output to the
experiment's tracking.output_dir (a shared folder on a cluster: the cache and checkpoints)."""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import math
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..distributed import LAUNCHER_ENV, free_port
from .study import CellResources, Study
from .sweep import CELL_SKIPPED, Plan, PlannedCell

log = logging.getLogger(__name__)
PARENT_ENV = "ADAPTER_STILTS_PARENT_PID"  # a cell process exits when the process that started it is gone
# the environment a cell process needs from the sweep's (a Ray worker's own environment is the node's)
FORWARDED_ENV = ("MLFLOW_", "HF_", "TRANSFORMERS_", "DS_ACCELERATOR", "ADAPTER_STILTS_", "TOKENIZERS_", "OMP_")
INTERRUPTED = 130


class CellKilled(RuntimeError):
    """The cell's process died from a signal nobody here sent (OOM killer, a lost node): retried."""


@dataclass(frozen=True)
class CellJob:
    """Everything a worker needs to run one cell: it reloads the study file and checks the cell
    still has the planned config key."""
    cell: str
    key: str
    study_file: str
    overrides: tuple[str, ...]
    cwd: str
    env: tuple[tuple[str, str], ...]
    ranks: int
    log_file: str


@dataclass(frozen=True)
class CellOutcome:
    cell: str
    code: int  # 0 ran, CELL_SKIPPED finished elsewhere, INTERRUPTED, else failed
    host: str
    seconds: float
    reason: str = ""
    attempts: int = 1


def cell_command(job: CellJob) -> list[str]:
    args = ["cell", "--exp", job.study_file, "--cell", job.cell, "--key", job.key,
            *(a for o in job.overrides for a in ("--set", o))]
    if job.ranks > 1:
        launcher = Path(sys.executable).with_name("deepspeed")
        # the GPUs Ray (or the local backend) gave this cell: --num_gpus would drop CUDA_VISIBLE_DEVICES
        # and take GPUs 0..N-1
        visible = dict(job.env).get("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES", ""))
        devices = ["--include", f"localhost:{visible}"] if visible else ["--num_gpus", str(job.ranks)]
        return [str(launcher if launcher.exists() else shutil.which("deepspeed") or "deepspeed"), *devices,
                "--master_port", str(free_port()), "--module", "adapter_stilts", *args]
    return [sys.executable, "-m", "adapter_stilts", *args]


def visible_gpus() -> list[str]:
    """The GPU ids this process may use (CUDA_VISIBLE_DEVICES, else every CUDA device)."""
    if (visible := os.environ.get("CUDA_VISIBLE_DEVICES")) is not None:
        return [d for d in visible.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


_stop = threading.Event()  # set by the local backend on Ctrl-C: its threads interrupt their cells


def launch_cell(job: CellJob) -> CellOutcome:
    """Run one cell's process to its end (in a local thread or a Ray task). Interrupted (Ctrl-C
    here, ray.cancel there): the cell gets SIGINT, marks its MLflow runs KILLED and exits; it
    resumes on the next sweep. Killed by a signal from elsewhere: CellKilled (retried)."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    env.update(dict(job.env), **{PARENT_ENV: str(os.getpid())})
    Path(job.log_file).parent.mkdir(parents=True, exist_ok=True)
    t0, interrupted = time.time(), False
    with open(job.log_file, "a") as out:
        out.write(f"\n==== cell {job.cell} on {socket.gethostname()} pid {os.getpid()} at "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')} ====\n")
        out.flush()
        # its own session: a Ctrl-C at the terminal reaches the sweep, which interrupts each cell once
        proc = subprocess.Popen(cell_command(job), cwd=job.cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            while proc.poll() is None:
                if _stop.is_set() and not interrupted:
                    interrupted = True
                    _signal_group(proc, signal.SIGINT)  # the group: a launcher's ranks too
                time.sleep(0.5)
        except KeyboardInterrupt:  # ray.cancel
            interrupted = True
            _signal_group(proc, signal.SIGINT)
        finally:
            if proc.poll() is None:
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
    code, seconds = proc.returncode, time.time() - t0
    if interrupted:
        return CellOutcome(job.cell, INTERRUPTED, socket.gethostname(), seconds, "interrupted")
    if code < 0:
        raise CellKilled(f"cell {job.cell}: its process was killed by signal {-code} on {socket.gethostname()}")
    if code > 128:  # the DeepSpeed launcher passes on a rank killed by a signal as 256 - N (or a shell's 128 + N)
        raise CellKilled(f"cell {job.cell}: exit status {code} on {socket.gethostname()} (a rank killed by a signal)")
    return CellOutcome(job.cell, code, socket.gethostname(), seconds,
                       "" if code in (0, CELL_SKIPPED) else _last_error(job.log_file))


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # it ended just now
        pass


def _last_error(log_file: str) -> str:
    """The reason a cell failed: its log's last ERROR line (or last line), for the sweep's summary."""
    try:
        lines = Path(log_file).read_text(errors="replace").splitlines()[-400:]
    except OSError:
        return "no log"
    errors = [ln for ln in lines if " ERROR " in ln or ln.startswith(("error:", "Traceback")) or "Error:" in ln]
    return (errors or lines or ["no output"])[-1].strip()[:300]


def watch_parent() -> None:
    """In a cell process started by a sweep: exit when the process that started it is gone (a
    killed Ray worker or sweep), so a retry never runs beside an orphan of the same cell."""
    pid = int(os.environ.get(PARENT_ENV, "0") or 0)
    if pid <= 0:
        return

    def watch() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                log.error("the sweep worker (pid %d) that started this cell is gone; stopping", pid)
                os.killpg(os.getpgrp(), signal.SIGKILL)  # its own group (and the ranks beside it): the whole cell
            except PermissionError:
                pass
            time.sleep(1.0)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


# ---- backends: where a cell's process starts ----

class LocalBackend:
    """N cells at once on this machine, each retried `retries` times if its process is killed."""

    def __init__(self, jobs: int, retries: int, gpus_per_cell: float = 0.0):
        self.jobs, self.retries = jobs, retries
        self.gpu_groups: queue.Queue | None = None  # the GPUs handed out: each cell sees only its own
        if gpus_per_cell:
            per, devices = math.ceil(gpus_per_cell), visible_gpus()
            if len(devices) < per:
                from ..config import ConfigError

                raise ConfigError(f"study.resources.gpus: {gpus_per_cell:g} per cell, but this machine shows "
                                  f"{len(devices)} GPUs")
            if jobs > len(devices) // per:
                log.warning("--jobs %d: only %d cells of %d GPUs fit on the %d GPUs here; running %d at once",
                            jobs, len(devices) // per, per, len(devices), len(devices) // per)
                self.jobs = len(devices) // per
            self.gpu_groups = queue.Queue()
            for i in range(self.jobs):
                self.gpu_groups.put(",".join(devices[i * per:(i + 1) * per]))
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="cell")

    def describe(self) -> str:
        return f"local backend, {self.jobs} cells at once" + (" (each on its own GPUs)" if self.gpu_groups else "")

    def slots(self) -> int:
        return self.jobs

    def submit(self, job: CellJob):
        if not any(k == "OMP_NUM_THREADS" for k, _ in job.env):  # the cores shared out, not each cell on all
            threads = str(max(1, (os.cpu_count() or 1) // self.jobs))
            job = dataclasses.replace(job, env=(*job.env, ("OMP_NUM_THREADS", threads)))
        return self.pool.submit(self._with_retries, job)

    def _with_retries(self, job: CellJob) -> CellOutcome:
        gpus = self.gpu_groups.get() if self.gpu_groups else None
        if gpus is not None:
            job = dataclasses.replace(job, env=(*job.env, ("CUDA_VISIBLE_DEVICES", gpus)))
        try:
            for attempt in range(1, self.retries + 2):
                try:
                    outcome = launch_cell(job)
                    return CellOutcome(**{**outcome.__dict__, "attempts": attempt})
                except CellKilled as e:
                    if attempt > self.retries or _stop.is_set():
                        raise
                    log.warning("%s; starting it again (attempt %d of %d)", e, attempt + 1, self.retries + 1)
        finally:
            if gpus is not None:
                self.gpu_groups.put(gpus)

    def wait(self, handles: list, timeout: float) -> list:
        done, _ = concurrent.futures.wait(handles, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED)
        return list(done)

    def result(self, handle) -> CellOutcome:
        return handle.result()

    def cancel(self, handles: list) -> None:
        _stop.set()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        _stop.clear()


class RayBackend:
    """One Ray task per cell with the study's resources; Ray retries a task whose worker or node
    died (and one whose process was killed), up to `retries` times."""

    def __init__(self, address: str | None, resources: CellResources):
        import ray

        self.ray, self.resources = ray, resources
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # a one-machine Ray instance, for trying the path without a cluster
            ray.init(include_dashboard=False, log_to_driver=False)
        self.task = ray.remote(launch_cell).options(
            num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=resources.retries,
            retry_exceptions=[CellKilled])

    def describe(self) -> str:
        from ..tracking import sqlite_path, tracking_uri

        if len(self.ray.nodes()) > 1 and sqlite_path(tracking_uri()):
            log.warning("MLFLOW_TRACKING_URI is the SQLite file %s on a %d-node cluster: cells on other nodes "
                        "write to their own copy unless it is on a shared folder; use a tracking server "
                        "(README: On several machines)", tracking_uri(), len(self.ray.nodes()))
        total = self.ray.cluster_resources()
        return (f"Ray cluster at {self.ray.get_runtime_context().gcs_address}: {len(self.ray.nodes())} nodes, "
                f"{total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs; {self.slots()} cells at once")

    def slots(self) -> int:
        total, r = self.ray.cluster_resources(), self.resources
        n = int(total.get("CPU", 0) // r.cpus)
        if r.gpus:
            n = min(n, int(total.get("GPU", 0) // r.gpus))
        return max(n, 1)  # 0 fits now: one waits in Ray's queue (an autoscaler may add a node)

    def submit(self, job: CellJob):
        return self.task.remote(job)

    def wait(self, handles: list, timeout: float) -> list:
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        return ready

    def result(self, handle) -> CellOutcome:
        return self.ray.get(handle)

    def cancel(self, handles: list) -> None:
        for h in handles:
            self.ray.cancel(h)  # KeyboardInterrupt in the task: the cell is interrupted cleanly

    def close(self) -> None:
        self.ray.shutdown()


# ---- the dispatch loop, the same for every backend ----

@dataclass
class Progress:
    done: list[CellOutcome] = field(default_factory=list)
    skipped: list[CellOutcome] = field(default_factory=list)
    failed: list[CellOutcome] = field(default_factory=list)
    running: dict = field(default_factory=dict)  # handle -> PlannedCell

    def line(self, left: int) -> str:
        return (f"done {len(self.done)}, running {len(self.running)}, failed {len(self.failed)}, left {left}"
                + (f", skipped {len(self.skipped)} (finished by another sweep)" if self.skipped else ""))


def forwarded_env() -> dict[str, str]:
    """The user's settings a cell process needs (taken before this process sets its own, e.g. a
    CPU driver's DS_ACCELERATOR=cpu, which a GPU worker must not get)."""
    from ..tracking import tracking_uri

    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
    env["MLFLOW_TRACKING_URI"] = tracking_uri()  # the default store resolved here: every worker logs to the same
    return env


def make_job(study: Study, overrides: list[str], p: PlannedCell, env: dict[str, str]) -> CellJob:
    logs = Path(p.config.tracking.output_dir).resolve() / f"{study.name}-logs"
    return CellJob(p.cell.id, p.spec_key, str(Path(study.source_file).resolve()), tuple(overrides), os.getcwd(),
                   tuple(sorted(env.items())), study.config.resources.ranks, str(logs / f"{p.cell.id}.log"))


def _pick(queue: collections.deque, cache) -> PlannedCell:
    """The next queued cell no live process holds (another sweep runs it), else the first."""
    from .sweep import CELL_STALE_S

    for i, p in enumerate(queue):
        if cache(p).holder("cells", p.key, CELL_STALE_S) is None:
            del queue[i]
            return p
    return queue.popleft()


def dispatch(plan: Plan, backend, overrides: list[str], env: dict[str, str], hours: float = 0.0,
             limit: int = 0) -> int:
    """Start the plan's cells on the backend, as many at once as it has room for; show progress;
    at the end list failures with their reasons. Exit code: 0 all ran, 1 a cell failed, 3 stopped
    by --hours/--limit with cells left, 130 interrupted (Ctrl-C: running cells stop cleanly)."""
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..cache import PhaseCache

    study, queue, progress = plan.study, collections.deque(plan.todo), Progress()
    caches: dict[str, PhaseCache] = {}

    def cache(p: PlannedCell) -> PhaseCache:
        root = str(Path(p.config.tracking.output_dir) / "cache")
        return caches.setdefault(root, PhaseCache(Path(root)))

    t0, started, total = time.time(), 0, len(queue)
    log.info("Sweep '%s' on the %s: %d cells to run", study.name, backend.describe(), total)
    stopped = False
    with logging_redirect_tqdm(), tqdm(total=total, desc=f"sweep {study.name}", unit="cell") as bar:
        try:
            while queue or progress.running:
                over = (hours and time.time() - t0 > hours * 3600) or (limit and started >= limit)
                if over and queue and not stopped:
                    stopped = True
                    log.info("Sweep: no new cells after %.1f h / %d cells; %d left for the next run",
                             (time.time() - t0) / 3600, started, len(queue))
                while queue and not stopped and len(progress.running) < backend.slots():
                    p = _pick(queue, cache)
                    progress.running[backend.submit(make_job(study, overrides, p, env))] = p
                    started += 1
                    log.info("cell %s started (%s)", p.cell.id, progress.line(len(queue)))
                if stopped and not progress.running:
                    break
                for handle in backend.wait(list(progress.running), timeout=2.0):
                    p = progress.running.pop(handle)
                    outcome = _outcome(backend, handle, p)
                    kept = {0: progress.done, CELL_SKIPPED: progress.skipped}.get(outcome.code, progress.failed)
                    kept.append(outcome)
                    log.info("cell %s %s on %s after %.1f min (%s)", p.cell.id, _verb(outcome.code), outcome.host,
                             outcome.seconds / 60, progress.line(len(queue)))
                    bar.update(1)
                bar.set_postfix_str(progress.line(len(queue)), refresh=True)
        except BaseException as e:  # Ctrl-C (SIGTERM too, see cli), or an error here: stop the running cells
            log.warning("%s: stopping %d running cells (they resume on the next sweep)",
                        "Interrupted" if isinstance(e, KeyboardInterrupt) else f"Sweep error {e!r}",
                        len(progress.running))
            backend.cancel(list(progress.running))
            for handle, p in list(progress.running.items()):
                outcome = _outcome(backend, handle, p, wait=150)
                log.warning("cell %s %s", p.cell.id, _verb(outcome.code))
            if isinstance(e, KeyboardInterrupt):
                return INTERRUPTED
            raise
        finally:
            backend.close()
    for o in progress.failed:
        log.error("cell %s failed (code %d, %d attempts): %s", o.cell, o.code, o.attempts, o.reason)
    log.info("Sweep '%s': %s in %.1f h; cell logs in %s", study.name, progress.line(len(queue)),
             (time.time() - t0) / 3600, Path(plan.cells[0].config.tracking.output_dir) / f"{study.name}-logs")
    if progress.failed:
        return 1
    return 3 if queue else 0


def _verb(code: int) -> str:
    return {0: "finished", CELL_SKIPPED: "was finished by another sweep", INTERRUPTED: "interrupted"}.get(
        code, f"FAILED (code {code})")


def _outcome(backend, handle, p: PlannedCell, wait: float = 0) -> CellOutcome:
    """The task's outcome, or a failed one naming why the task itself failed (retries exhausted)."""
    try:
        if wait and not backend.wait([handle], timeout=wait):
            return CellOutcome(p.cell.id, INTERRUPTED, "?", 0.0, "still stopping when the sweep exited")
        return backend.result(handle)
    except Exception as e:  # a Ray task error, a worker lost after its retries, CellKilled
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        return CellOutcome(p.cell.id, -1, "?", 0.0, f"{type(e).__name__}: {first}"[:300])


def make_backend(name: str, study: Study, jobs: int = 1, address: str | None = None):
    """`local` (this machine, `jobs` cells at once) or `ray` (a cluster at `address`, else a local one)."""
    from ..config import ConfigError

    if name == "local":
        if jobs < 1:
            raise ConfigError(f"--jobs: {jobs}; at least 1")
        return LocalBackend(jobs, study.config.resources.retries, study.config.resources.gpus)
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--backend ray: Ray is not installed (pip install 'ray==2.60.0')") from None
        return RayBackend(address, study.config.resources)
    raise ConfigError(f"--backend: '{name}' is not one of local, ray")
