"""The GPU check's bundle (scripts/gpu_bundle.py): which packages travel, and loads that each fit one
device call and put big files back together byte for byte (as scripts/gpu_check.sh does)."""
import importlib.util
import subprocess

from conftest import REPO

spec = importlib.util.spec_from_file_location("gpu_bundle", REPO / "scripts" / "gpu_bundle.py")
gpu_bundle = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_bundle)


def test_what_the_gpu_image_lacks_travels_and_nothing_it_has():
    carried = gpu_bundle.to_carry(gpu_bundle.closure())
    for name in ("adapters", "deepspeed", "mlflow", "datasets", "faiss-cpu", "seqeval",
                 "transformers", "huggingface-hub", "tokenizers"):  # the last three: the image's are too new
        assert name in carried, name
    for name in ("torch", "ray", "numpy", "pandas", "scipy", "safetensors", "tqdm"):
        assert name not in carried, name
    assert carried["transformers"].startswith("4.57")


def test_loads_fit_the_limit_and_parts_reassemble(tmp_path):
    staged = tmp_path / "staged"
    (staged / "me5").mkdir(parents=True)
    big = bytes(range(256)) * 4000  # ~1 MB: split into parts
    (staged / "me5" / "weights.zip").write_bytes(big)
    for i in range(5):
        (staged / f"w{i}.whl").write_bytes(bytes([i]) * 200_000)
    limit = 300_000
    loads = gpu_bundle.split_into_loads(staged, tmp_path / ".gpu", limit)
    assert all(sum(f.stat().st_size for f in files) <= limit for files in loads)
    # gpu_check.sh's reassembly, as written there
    script = (REPO / "scripts" / "gpu_check.sh").read_text()
    start = script.index('B=/tmp/gpu-bundle')
    block = script[start: script.index("done", script.index("for first in")) + 4]
    block = block.replace("B=/tmp/gpu-bundle", f"BUNDLE=.gpu B={tmp_path / 'bundle'}")
    subprocess.run(["bash", "-c", block], cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "bundle" / "me5" / "weights.zip").read_bytes() == big
    assert sorted(p.name for p in (tmp_path / "bundle").glob("*.whl")) == [f"w{i}.whl" for i in range(5)]
    assert not list((tmp_path / "bundle").rglob("*.part*"))
