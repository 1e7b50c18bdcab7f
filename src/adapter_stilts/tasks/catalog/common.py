"""Shared pieces of the catalog: Hub loading with a clear offline error, fixed dev holdouts,
label checks that name the file and line."""
from __future__ import annotations

import os
from pathlib import Path

from ..readers import DataError

DEV_EVERY = 10  # tasks with a single labelled file hold out every 10th example as their dev split


def hub_split(path: str, config: str | None, split: str, **options):
    """Load a split from the Hugging Face Hub (or, with `data_files`, published files through one of
    the datasets library's builders) with a clear message when that is impossible."""
    import datasets

    try:
        return datasets.load_dataset(path, config, split=split, **options)
    except Exception as e:  # offline, unknown id, gated: all surface as different exception types
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        why = "the Hub is unreachable (offline mode is on)" if offline else f"{type(e).__name__}: {e}"
        what = f"Hub dataset '{path}'" if "data_files" not in options else f"'{options['data_files']}' ({path})"
        raise DataError(
            f"cannot load {what} (config {config!r}, split {split!r}): {why}. "
            f"Use data.source=local with data.local_dir pointing at local files instead."
        ) from None


def hub_file(repo: str, filename: str) -> Path:
    """A file of a Hugging Face Hub dataset repository (downloaded once into the Hub cache), with
    the same clear message as hub_split when that is impossible."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename, repo_type="dataset"))
    except Exception as e:  # offline, unknown repo or file, gated
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        why = "the Hub is unreachable (offline mode is on)" if offline else f"{type(e).__name__}: {e}"
        raise DataError(f"cannot load '{filename}' of Hub dataset '{repo}': {why}. "
                        f"Use data.source=local with data.local_dir pointing at local files instead.") from None


def holdout(examples: list[dict], split: str) -> list[dict]:
    if split == "dev":
        return examples[::DEV_EVERY]
    return [e for i, e in enumerate(examples) if i % DEV_EVERY]


def check_label(label: str, labels: tuple[str, ...], where: str) -> str:
    if label not in labels:
        raise DataError(f"{where}: label {label!r} is not one of {', '.join(labels)}")
    return label



def english_only(root: Path) -> tuple[str, ...]:
    return ("en",)
