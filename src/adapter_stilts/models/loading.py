"""Resolve a model name (me5-small, a local folder, or a Hugging Face id) and build an
adapter-capable model with flexible heads. What a phase adds, trains and saves is
models/phase_models.py; sentence embeddings are evaluation/embedding.py."""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

from ..config import ConfigError
from .heads import register_heads

log = logging.getLogger(__name__)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ModelError(ConfigError):
    """A model name that cannot be resolved."""


class _SpuriousRegexWarning(logging.Filter):
    # transformers 4.57 warns about a Mistral regex on any sentencepiece tokenizer.json with a
    # Metaspace pre-tokenizer; ours is XLM-R's and correct (see STACK.md).
    def filter(self, record: logging.LogRecord) -> bool:
        return "incorrect regex pattern" not in record.getMessage()


def _silence_tokenizer_warning() -> None:
    for name in ("transformers.tokenization_utils_base", "transformers.tokenization_utils_fast"):
        logging.getLogger(name).addFilter(_SpuriousRegexWarning())


# names a user most likely meant, for a hint after a typo
KNOWN_MODELS = ("me5-small", "intfloat/multilingual-e5-small", "xlm-roberta-base", "xlm-roberta-large",
                "FacebookAI/xlm-roberta-base", "FacebookAI/xlm-roberta-large", "facebook/xlm-roberta-xl",
                "facebook/xlm-roberta-xxl", "bert-base-multilingual-cased")


def _nearest(name: str) -> str:
    import difflib

    near = difflib.get_close_matches(name, KNOWN_MODELS, n=1, cutoff=0.6)
    return f"; did you mean '{near[0]}'?" if near else ""


def check_model_name(name: str) -> None:
    """Fail early, in one line, on a name that cannot be a model (called before any compute): a
    missing folder, a folder without a model, a Hub id not cached offline or unknown to the Hub."""
    from .me5_small import ME5_NAME

    if name == ME5_NAME:
        return
    if Path(name).is_dir():
        if not (Path(name) / "config.json").is_file():
            raise ModelError(f"model.name: folder '{name}' is not a model (no config.json in it)")
        return
    if name.startswith((".", "/", "~")):
        raise ModelError(f"model.name: local folder '{name}' does not exist")
    if not HUB_ID.match(name):
        raise ModelError(f"model.name: '{name}' is neither '{ME5_NAME}', an existing folder, nor a Hub id "
                         f"(org/name){_nearest(name)}")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise ModelError(f"model.name: '{name}' is not in the local Hugging Face cache and cannot be fetched "
                             f"offline (HF_HUB_OFFLINE=1){_nearest(name)}; use '{ME5_NAME}' or a local folder")
        return
    try:
        from huggingface_hub import model_info

        model_info(name, timeout=10)  # a node without internet must not stall start-up
    except Exception as e:  # the Hub's answer, or no answer
        if (error := hub_model_error(name, e)) is not None:
            raise error from None
        log.warning("model.name: could not ask the Hugging Face Hub about '%s' (%s); trying to load it",
                    name, str(e).splitlines()[0] if str(e) else type(e).__name__)


def hub_model_error(name: str, error: Exception) -> ModelError | None:
    """The one line for the Hub's answer about a model id, or None when the Hub gave none (offline,
    a timeout: loading will tell)."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(error, GatedRepoError):
        return ModelError(f"model.name: '{name}' is gated on the Hugging Face Hub: accept its terms and log in "
                          f"(huggingface-cli login)")
    if isinstance(error, RepositoryNotFoundError):
        return ModelError(f"model.name: '{name}' does not exist on the Hugging Face Hub (or is private)"
                          f"{_nearest(name)}")
    if isinstance(error, RevisionNotFoundError):
        return ModelError(f"model.name: '{name}': revision not found on the Hugging Face Hub")
    return None


def resolve_model(name: str, layers: int = 0) -> str:
    """Return what `from_pretrained` should load: a folder, or the Hub id itself; with `layers`
    (model.layers), a copy of the model keeping only its first `layers` transformer layers."""
    from .me5_small import ME5_NAME, ensure_me5_small

    check_model_name(name)
    path = str(ensure_me5_small()) if name == ME5_NAME else name
    return truncated_model(path, layers) if layers else path


def truncated_model(path: str, layers: int, cache: Path | None = None) -> str:
    """A saved copy of a model with only its first `layers` transformer layers (embeddings and
    the first layers' weights as they are): the offline stand-in for a smaller model of the same
    family. Built once per model and depth under the cache (a lock, so ranks build it once; a
    temporary folder renamed into place, so a kill never leaves half a model); `layers` equal to
    the model's depth is the model itself."""
    import hashlib
    import shutil
    import tempfile

    from filelock import FileLock
    from transformers import AutoConfig, AutoModel

    from ..integrity import verify_manifest, write_manifest
    from .me5_small import cache_root

    config = AutoConfig.from_pretrained(path)
    depth = int(config.num_hidden_layers)
    if not 1 <= layers <= depth:
        raise ModelError(f"model.layers={layers}: '{path}' has {depth} layers; use 1..{depth} (0 = all of them)")
    if layers == depth:
        return path
    root = cache or cache_root() / "truncated"
    root.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(path).name).strip("-")
    folder = root / f"{slug}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}-{layers}layers"
    with FileLock(str(folder) + ".lock"):
        if verify_manifest(folder, "manifest.json"):
            return str(folder)
        log.info("Saving the first %d of %d layers of %s to %s (model.layers)", layers, depth, path, folder)
        config.num_hidden_layers = layers
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder.name}-"))
        AutoModel.from_pretrained(path, config=config).save_pretrained(tmp)
        load_tokenizer(path).save_pretrained(tmp)
        write_manifest(tmp, "manifest.json")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return str(folder)


def model_layers(path: str) -> int:
    """The encoder's number of transformer layers (the model's size in a result's identity)."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(path).num_hidden_layers)


def check_max_length(path: str, max_length: int) -> None:
    """model.max_length must fit the model's position embeddings (XLM-R reserves pad+1 of them)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    offset = config.pad_token_id + 1 if config.model_type in ("xlm-roberta", "roberta") else 0
    limit = config.max_position_embeddings - offset
    if max_length > limit:
        raise ModelError(f"model.max_length={max_length} is longer than '{path}' allows ({limit} tokens)")


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    _silence_tokenizer_warning()
    return AutoTokenizer.from_pretrained(path)


def attention_implementation(choice: str = "auto") -> str:
    """`auto`: eager attention on CPUs, SDPA on GPUs. On the CPU, torch's SDPA backward (flash
    attention for CPU) took 37% of an adapter training step of me5-small; eager attention's plain
    matmuls made the whole step 1.7x faster and inference 1.2x (bench/throughput.py, README)."""
    if choice != "auto":
        return choice
    return "sdpa" if torch.cuda.is_available() else "eager"


def build_model(path: str, dropout: float, attention: str = "auto"):
    """An AutoAdapterModel (encoder + flexible heads) with the given dropout everywhere."""
    from adapters import AutoAdapterModel
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    for attr in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if hasattr(config, attr):
            setattr(config, attr, dropout)
    model = AutoAdapterModel.from_pretrained(path, config=config,
                                             attn_implementation=attention_implementation(attention))
    register_heads(model)
    return model


def adapter_config(cfg) -> object:
    from adapters import AdapterConfig

    return AdapterConfig.load(cfg.config, reduction_factor=cfg.reduction_factor)


def set_full_finetuning(model) -> None:
    for p in model.parameters():
        p.requires_grad = True


def count_parameters(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
