"""The benchmark runs end to end (no timing is asserted: figures are for people to read)."""
import subprocess
import sys

from conftest import REPO


def test_benchmark_runs_on_a_tiny_model(tiny_model_dir, data_dir):
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "throughput.py"), "--model", str(tiny_model_dir),
                           "--examples", "32", "--seeds", "1", "--datasets", "sst2", "--dev-size", "16"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    rows = [line for line in lines if line.startswith("sst2 ")]
    assert [r.split()[1] for r in rows] == ["ours", "A", "B", "ours-full", "hf-full"]
    assert all("examples/s" in r and "peak RSS" in r and "dev " in r for r in rows)
    assert lines[-3].startswith("ours/A training speed:") and lines[-2].startswith("ours/B training speed:")
    assert lines[-1].startswith("ours-full/hf-full training speed:")


def test_evaluation_benchmark_runs_on_a_tiny_model(tiny_model_dir, data_dir):
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "throughput.py"), "--mode", "eval", "--model",
                           str(tiny_model_dir), "--eval-languages", "2", "--eval-size", "20"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-5].startswith("zero-shot scoring (XNLI test, 2 languages, 40 examples")
    assert "permuted stack" in lines[-4] and "contiguous (ours)" in lines[-3] and "examples/s" in lines[-3]
    assert lines[-2].startswith("fusion scoring speed, contiguous/permuted: ")
    assert lines[-1].startswith("Tatoeba, 2 offline languages") and "s wall" in lines[-1]
