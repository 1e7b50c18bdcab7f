"""Use a published or earlier-trained intermediate adapter instead of training one.

`intermediate.adapter` may be: a local adapter folder (as written by save_adapter), an MLflow
artifact URI `runs:/<run id>/<path>`, the name of an earlier MLflow run (its logged
`model/adapter`), or a Hugging Face Hub / AdapterHub id (resolved by the adapters library's own
load_adapter, so online only). Whatever the source, the adapter is copied into this invocation's
output folder with a manifest, so phase 3 loads it like any adapter trained here."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .. import distributed as dist
from ..integrity import write_manifest
from .loading import ModelError, build_model
from .phase_models import MANIFEST, PhaseArtifact, check_adapter_fits

log = logging.getLogger(__name__)
ADAPTER_FILES = ("adapter_config.json",)


def _is_adapter_folder(path: Path) -> bool:
    return all((path / f).is_file() for f in ADAPTER_FILES)


def _adapter_inside(folder: Path, spec: str) -> Path:
    for candidate in (folder, folder / "adapter", folder / "model" / "adapter"):
        if _is_adapter_folder(candidate):
            return candidate
    raise ModelError(f"intermediate.adapter: '{spec}' ({folder}) holds no adapter (no adapter_config.json in it, "
                     f"in adapter/ or in model/adapter/)")


def _from_mlflow(spec: str, tmp: Path) -> Path:
    import mlflow
    from mlflow.tracking import MlflowClient

    from ..tracking import retry_if_locked, tracking_uri

    uri = tracking_uri()
    if spec.startswith("runs:/"):
        try:
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=spec, dst_path=str(tmp), tracking_uri=uri))
        except Exception as e:
            raise ModelError(f"intermediate.adapter: cannot download '{spec}' from {uri}: {e}") from None
    client = MlflowClient(uri)
    runs = retry_if_locked(client.search_runs, [e.experiment_id for e in client.search_experiments()],
                           f"attributes.run_name = '{spec}' and attributes.status = 'FINISHED'",
                           order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return None  # not a run name: the caller tries the Hub
    run = runs[0]
    log.info("intermediate.adapter: using run '%s' (%s) from %s", spec, run.info.run_id, uri)
    return Path(client.download_artifacts(run.info.run_id, "model", str(tmp)))


def check_adapter_spec(spec: str) -> None:
    """Before any run: a local adapter folder exists and holds an adapter (an MLflow run or a Hub
    id is checked when fetched: the store and the Hub are not opened before the run starts)."""
    local = Path(spec).expanduser()
    if local.is_dir():
        _adapter_inside(local, spec)
    elif spec.startswith((".", "/", "~")):
        raise ModelError(f"intermediate.adapter: folder '{spec}' does not exist")


def fetch_adapter(spec: str, base: str, out: Path, name: str) -> PhaseArtifact:
    """Copy the adapter `spec` into `out/adapter` (rank 0), checked against the model; every rank
    gets the same artifact."""
    error = None
    if dist.is_main():
        try:
            _fetch(spec, base, out, name)
        except ModelError as e:
            error = str(e)
    error = dist.broadcast_object(error)  # every rank fails the same way, none waits forever
    if error:
        raise ModelError(error)
    return PhaseArtifact(out, "adapters", name)


def _fetch(spec: str, base: str, out: Path, name: str) -> None:
    tmp = out.with_name(out.name + ".fetch")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    local = Path(spec).expanduser()
    if local.is_dir() or spec.startswith((".", "/", "~")):
        check_adapter_spec(spec)
        source = _adapter_inside(local, spec)
    else:
        found = _from_mlflow(spec, tmp / "download")
        source = _adapter_inside(found, spec) if found else None
    result = out.with_name(out.name + ".tmp")
    shutil.rmtree(result, ignore_errors=True)
    result.mkdir(parents=True)
    model = build_model(base, 0.0)
    if source is not None:
        check_adapter_fits(source, model)
        shutil.copytree(source, result / "adapter")
    else:  # a Hub / AdapterHub id: the adapters library resolves and downloads it
        try:
            loaded = model.load_adapter(spec, with_head=False)
        except Exception as e:
            raise ModelError(f"intermediate.adapter: '{spec}' is not a folder, an MLflow run or artifact, and the "
                             f"Hub could not provide it ({type(e).__name__}: {e})") from None
        model.save_adapter(str(result / "adapter"), loaded, with_head=False)
    (result / "source.txt").write_text(spec + "\n")
    write_manifest(result, MANIFEST)
    shutil.rmtree(out, ignore_errors=True)
    result.rename(out)
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("intermediate adapter '%s' taken from %s", name, spec)
