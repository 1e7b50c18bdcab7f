"""The benchmark runs end to end (no timing is asserted: figures are for people to read)."""
import subprocess
import sys

import yaml
from conftest import REPO, write_tiny_study


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


def test_cell_benchmark_times_each_phase_with_sharing_on_and_off(tiny_model_dir, tmp_path):
    """A tiny study's k = 1 cell with XQuAD (and MLQA added): MLQA's training appears only when
    sharing is off, and both runs give identical scores."""
    study = write_tiny_study(tmp_path, tiny_model_dir, "cellbench", k=[0, 1], subsets_per_k=1,
                             untrained_control=False)
    raw = yaml.safe_load(study.read_text())
    raw["target"]["tasks"] = {"xquad": {"train_size": 24, "dev_size": 8, "test_size": 6, "languages": ["de"]},
                              "tatoeba": {"test_size": 10, "languages": ["de"]}}
    study.write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "throughput.py"), "--mode", "cell", "--study",
                           str(study), "--add-targets", "mlqa"], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert " | cell mode | study " in lines[0]
    assert lines[1].startswith("cell ") and "-k1-" in lines[1] and "mlqa" in lines[1]
    table = {line[:28].strip(): line[28:].split() for line in lines[3:-4]}
    assert {"setup", "intermediate", "training xquad", "scoring xquad", "scoring mlqa", "retrieval tatoeba"} \
        <= set(table)
    assert table["training mlqa"][0] == "-" and float(table["training mlqa"][1]) > 0  # trained only when unshared
    assert all(float(v) > 0 for name, row in table.items() for v in row if v != "-"), table
    assert lines[-2] == "scores identical: yes"
    assert lines[-1].startswith("cell cost, unshared/shared: ") and lines[-1].endswith("x")


def test_repeated_cell_runs_average_per_phase_and_must_score_alike(capsys):
    sys.path.insert(0, str(REPO / "bench"))
    import cell

    run = {"cell": "c", "targets": ["xnli"], "scores": {"target/xnli/none": {"test/de/accuracy": 0.5}}}
    a = {**run, "phases": {"setup": 1.0, "scoring xnli": 4.0}, "wall_s": 5.0, "peak_rss_gb": 2.0}
    b = {**run, "phases": {"setup": 3.0, "scoring xnli": 6.0}, "wall_s": 9.0, "peak_rss_gb": 3.0}
    mean = cell.mean_run([a, b])
    assert mean["phases"] == {"setup": 2.0, "scoring xnli": 5.0} and mean["wall_s"] == 7.0
    assert mean["peak_rss_gb"] == 3.0
    odd = {**b, "scores": {"target/xnli/none": {"test/de/accuracy": 0.6}}}
    cell.mean_run([a, odd])
    assert "scored differently: target/xnli/none: test/de/accuracy" in capsys.readouterr().out
