"""The translate-train baseline through `run.py` on the tiny encoder and real data: an intermediate
task on translated data beside its English-only twin in one experiment, two identities in the
MLflow store, the results table and the report."""
import yaml
from conftest import mlflow_runs, run_cli

from adapter_stilts.identity import ResultIdentity
from adapter_stilts.report import Table
from adapter_stilts.results_table import build_results


def test_translated_intermediate_data_and_its_english_twin_are_two_results(write_experiment, tmp_path, data_dir):
    exp = write_experiment({"name": "tt"})
    raw = yaml.safe_load(exp.read_text())
    raw["intermediate"]["tasks"] = {"mnli": {"train_size": 16, "dev_size": 8},
                                    "mnli_translated": {"train_size": 16, "dev_size": 8, "languages": ["de", "en"]}}
    raw["target"]["tasks"] = {"xnli": {"train_size": 16, "dev_size": 8, "test_size": 12, "languages": ["de", "sw"]}}
    exp.write_text(yaml.safe_dump(raw))
    proc = run_cli(["--exp", str(exp)], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    _, runs = mlflow_runs(tmp_path)
    units = {r.info.run_name: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert set(units) == {"intermediate/mnli", "intermediate/mnli_translated", "target/xnli/mnli",
                          "target/xnli/mnli_translated", "target/xnli/none"}
    twin, tt = (ResultIdentity.from_tags(units[f"target/xnli/{s}"].data.tags) for s in ("mnli", "mnli_translated"))
    assert (twin.intermediate_languages, twin.intermediate_examples) == ((), 16)
    assert (tt.intermediate_languages, tt.intermediate_examples) == (("de", "en"), 32)
    assert units["intermediate/mnli_translated"].data.tags["id.intermediate_languages"] == "de,en"
    keys = {u: units[u].data.tags["cache_key"] for u in units}
    assert keys["intermediate/mnli"] != keys["intermediate/mnli_translated"]
    assert keys["target/xnli/mnli"] != keys["target/xnli/mnli_translated"]

    results = build_results(["tt"], f"sqlite:///{tmp_path / 'mlflow.db'}")
    frame = results.frame
    assert dict(frame.groupby("setup")["intermediate_languages"].first()) == {
        "mnli": "", "mnli_translated": "de,en", "none": ""}
    table = Table(results, replicates=50)
    assert [table.label(r) for r in table.rows] == ["adapters: none", "adapters: mnli",
                                                    "adapters: mnli_translated [de en]"]
