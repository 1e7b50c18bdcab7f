"""`python run.py tasks`: every task with what of it runs offline, read from the local files."""
from conftest import run_cli


def test_tasks_listing_shows_the_retrieval_tasks_and_what_is_offline(tmp_path, data_dir):
    proc = run_cli(["tasks"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    # task, kind, role, metric, XTREME count, XTREME-R count, offline, languages
    assert rows["lareqa"][:7] == ["lareqa", "retrieval", "target", "map_at_20", "-", "11", "yes"]
    assert rows["lareqa"][7:] == "ar de el en es hi ru th tr vi zh".split()
    assert rows["mewslix"] == ["mewslix", "retrieval", "target", "map_at_20", "-", "11", "no", "test", "data"]
    assert rows["tatoeba"][4:7] == ["36", "41", "yes"]
    notes = proc.stdout.split("Offline notes:")[1]
    assert "mewslix: no Mewsli-X data offline" in notes and "lareqa: built from XQuAD's files" in notes
