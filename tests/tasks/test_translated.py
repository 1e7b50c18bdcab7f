"""Translated intermediate-task data (translate-train): mnli_translated on the real offline files,
XTREME's documented local layout, the Hub path's offline error, and the languages of a setup."""
import pytest

from adapter_stilts.config import ConfigError, TaskSettings
from adapter_stilts.tasks.catalog.translated import mt_path
from adapter_stilts.tasks.data import DataSource, intermediate_languages, load_task_data
from adapter_stilts.tasks.lookup import get_task
from adapter_stilts.tasks.readers import DataError

SEEN = ["en", "de", "fr"]


def _load(task, source, **settings):
    return load_task_data(get_task(task), TaskSettings(**settings), source, 42, "intermediate", eval_seed=42)


def test_offline_translations_are_the_xnli_dev_files(data_dir):
    task = get_task("mnli_translated")
    assert task.has_translations and not get_task("mnli").has_translations
    assert task.local_languages(data_dir) == tuple(sorted({"en", *get_task("xnli").local_languages(data_dir)}))
    de = task.load_local(data_dir, "train", "de")
    assert de == get_task("xnli").load_local(data_dir, "dev", "de") and len(de) == 2490
    assert task.load_local(data_dir, "dev", "en") == get_task("mnli").load_local(data_dir, "dev", "en")


def test_no_translated_training_pair_is_an_xnli_test_pair(data_dir):
    """Dev files only for training: XNLI's test items, scored zero-shot, are other items in every language."""
    xnli = get_task("xnli")
    for lang in get_task("mnli_translated").local_languages(data_dir):
        if lang == "en":
            continue
        train = {(e["text_a"], e["text_b"]) for e in get_task("mnli_translated").load_local(data_dir, "train", lang)}
        test = {(e["text_a"], e["text_b"]) for e in xnli.load_local(data_dir, "test", lang)}
        assert len(train) > 2000 and len(test) > 5000 and not train & test, lang


def test_the_twin_trains_on_the_same_english_examples_plus_translations(data_dir):
    source = DataSource("local", data_dir)
    twin = _load("mnli", source, train_size=40, dev_size=10)
    tt = _load("mnli_translated", source, train_size=40, dev_size=10, languages=["fr", "en", "de", "fr"])
    assert tt.train_languages == ("en", "de", "fr") and tt.translated and not twin.translated
    assert len(tt.train) == 3 * 40 and tt.train[:40] == twin.train and tt.dev == twin.dev  # English dev only
    # parallel files, one draw: the same items in each language (translate-train-all)
    de, fr = (get_task("xnli").load_local(data_dir, "dev", lang) for lang in ("de", "fr"))
    positions = [de.index(e) for e in tt.train[40:80]]
    assert [fr[i] for i in positions] == tt.train[80:]
    assert intermediate_languages([twin]) == () and intermediate_languages([twin, tt]) == ("de", "en", "fr")
    every = _load("mnli_translated", source, train_size=5, dev_size=5)  # default: every language with data
    assert every.train_languages[0] == "en" and len(every.train_languages) == 14 and len(every.train) == 14 * 5


def test_languages_of_an_intermediate_task_are_checked(data_dir):
    source = DataSource("local", data_dir)
    with pytest.raises(DataError, match=r"intermediate.tasks.mnli.languages: de not available offline .*"
                                        r"available: en \(translated training data: mnli_translated\)"):
        _load("mnli", source, train_size=5, languages=["de"])
    with pytest.raises(DataError, match="intermediate.tasks.mnli_translated.languages: bg, xx not available"):
        _load("mnli_translated", source, train_size=5, languages=["de", "bg", "xx"])
    with pytest.raises(ConfigError, match="intermediate.tasks.mnli_translated.train_size: 3000 is more than the "
                                          "2490 examples of its train split in de"):
        _load("mnli_translated", source, train_size=3000, languages=["de"])


def test_xtreme_translate_train_files_in_the_documented_layout_come_first(tmp_path, data_dir):
    for lang in ("en", "de"):  # the human-translated dev files, as offline
        (tmp_path / "xnli" / "xtreme").mkdir(parents=True, exist_ok=True)
        (tmp_path / "xnli" / "xtreme" / f"dev-{lang}.tsv").write_text("p\th\tneutral\n")
    path = mt_path(tmp_path, "fr")
    path.parent.mkdir(parents=True)
    path.write_text("A man.\tA person.\tUn homme.\tUne personne.\tentailment\n"
                    "A cat.\tA dog.\tUn chat.\tUn chien.\tcontradictory\n")
    task = get_task("mnli_translated")
    assert task.local_languages(tmp_path) == ("de", "en", "fr")
    assert task.load_local(tmp_path, "train", "fr") == [
        {"text_a": "Un homme.", "text_b": "Une personne.", "label": "entailment"},
        {"text_a": "Un chat.", "text_b": "Un chien.", "label": "contradiction"}]
    assert task.load_local(tmp_path, "train", "de") == [{"text_a": "p", "text_b": "h", "label": "neutral"}]
    path.write_text("A man.\tA person.\tUn homme.\tUne personne.\tentailment\nA.\tB.\tC.\tD.\tmaybe\n")
    with pytest.raises(DataError, match=r"en-fr-translated.tsv:2: label 'maybe' is not one of"):
        task.load_local(tmp_path, "train", "fr")
    path.write_text("A man.\tUn homme.\tentailment\n")
    with pytest.raises(DataError, match=r"en-fr-translated.tsv:1: expected 5 tab-separated columns, got 3"):
        task.load_local(tmp_path, "train", "fr")


def test_hub_path_reads_xtremes_published_files_and_says_why_not_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match=r"cannot load 'https://storage.googleapis.com/xtreme_translations/XNLI/"
                                        r"translate-train/en-de-translated.tsv' \(csv\).*offline"):
        get_task("mnli_translated").load_hub("train", "de")
