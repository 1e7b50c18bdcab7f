"""Mewsli-X: no data offline, so fixture files in the release's and in XTREME's layouts written
here; the official query and candidate texts; bad records named by file and line; the Hub path."""
import json
import tarfile

import pytest

from adapter_stilts.tasks.catalog import mewslix
from adapter_stilts.tasks.catalog.mewslix import MEWSLIX_LANGS, entity_text, mention_query
from adapter_stilts.tasks.lookup import get_task
from adapter_stilts.tasks.readers import DataError

SMITH = "The verdict came back for Smith, who stepped down as AG of Fictitious County in February, 2012."


def test_task_registration_and_nothing_offline(data_dir):
    task = get_task("mewslix")
    assert (task.family, task.metric, task.splits, task.languages) == ("retrieval", "map_at_20", ("test", "pool"),
                                                                        MEWSLIX_LANGS)
    assert task.notes["retrieval"] == "answer_retrieval" and "no Mewsli-X data offline" in task.notes["offline"]
    assert task.local_languages(data_dir) == ()


def test_mention_query_as_utils_mewslix_preprocess_mention():
    start = SMITH.index("Smith")
    # left + " { Smith } " + right, the mention prepended, then ONE pass of "  " -> " " (so ", who"
    # keeps the space the markup put before it; the function's docstring example drops it)
    assert mention_query(SMITH, [(0, len(SMITH))], start, start + 5) == \
        "Smith: The verdict came back for { Smith } , who stepped down as AG of Fictitious County in February, 2012."
    text = "First {one} here. Then {two} and Paris\nagain {three}."
    sentences = [(0, 17), (18, len(text))]
    s = text.index("Paris")
    # only the mention's sentence; pre-existing {...} become (...); the newline is folded
    assert mention_query(text, sentences, s, s + 5) == "Paris: Then (two) and { Paris } again (three)."
    with pytest.raises(ValueError, match="crosses a sentence boundary"):
        mention_query(text, sentences, 10, 20)


def test_entity_text_joins_the_description_sentences():
    description = "Paris is the capital.\nIt is  large.  Ignored tail"
    assert entity_text(description, [(0, 21), (22, 36)]) == "Paris is the capital. It is large."
    assert entity_text("a   b", [(0, 5)]) == "a  b"  # one replacement pass, as there


def _context(lang, text, mentions, sentence_spans=None):
    return {"context": {"document_title": "t", "document_url": "u", "document_id": "d", "language": lang,
                        "text": text, "sentence_spans": sentence_spans or [{"start": 0, "end": len(text)}]},
            "mentions": [{"example_id": i, "entity_id": e, "mention_span": {"start": text.index(m),
                                                                            "end": text.index(m) + len(m), "text": m}}
                         for i, m, e in mentions]}


ENTITIES = [
    {"entity_id": "Q90", "title": "Paris", "description": "Paris ist die Hauptstadt.\nSie ist groß.",
     "sentence_spans": [{"start": 0, "end": 25}, {"start": 26, "end": 39}], "description_language": "de",
     "description_url": "https://de.wikipedia.org/wiki/Paris"},
    {"entity_id": "Q64", "title": "Berlin", "description": "Berlin is a city.", "description_language": "en",
     "sentence_spans": [{"start": 0, "end": 17}], "description_url": "https://en.wikipedia.org/wiki/Berlin"},
]


def _jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _release(root):
    folder = root / "mewslix"
    _jsonl(folder / "candidate_set_entities.jsonl", ENTITIES)
    _jsonl(folder / "wikinews_mentions-test.jsonl", [
        _context("en", "Paris met Berlin.", [("e1", "Paris", "Q90"), ("e2", "Berlin", "Q64")]),
        _context("de", "Berlin ist schön.", [("g1", "Berlin", "Q64")]),
        _context("en", "Only Paris.", [("e3", "Paris", "Q90")]),
    ])
    return folder


def test_release_layout(tmp_path):
    _release(tmp_path)
    task = get_task("mewslix")
    assert task.local_languages(tmp_path) == tuple(sorted(MEWSLIX_LANGS))
    assert task.load_local(tmp_path, "pool", "all") == [
        {"id": "Q90", "language": "de", "text": "Paris ist die Hauptstadt. Sie ist groß."},
        {"id": "Q64", "language": "en", "text": "Berlin is a city."}]
    assert task.load_local(tmp_path, "test", "en") == [
        {"id": "e1", "query": "Paris: { Paris } met Berlin.", "relevant": ["Q90"]},
        {"id": "e2", "query": "Berlin: Paris met { Berlin } .", "relevant": ["Q64"]},
        {"id": "e3", "query": "Paris: Only { Paris } .", "relevant": ["Q90"]}]
    assert [q["id"] for q in task.load_local(tmp_path, "test", "de")] == ["g1"]
    assert task.load_local(tmp_path, "test", "ja") == []  # an empty split: data loading refuses it
    with pytest.raises(DataError, match="mewslix has a test and a pool split, not 'dev'"):
        task.load_local(tmp_path, "dev", "en")


def test_xtreme_layout_with_blanked_test_labels(tmp_path):
    folder = tmp_path / "mewslix"
    _jsonl(folder / "candidate_set_entities.jsonl", ENTITIES)
    mentions = _jsonl(folder / "wikinews_mentions" / "test-de.jsonl",
                      [_context("de", "Berlin ist schön.", [("g1", "Berlin", "")])])  # utils_preprocess blanks it
    task = get_task("mewslix")
    assert task.local_languages(tmp_path) == ("de",)
    with pytest.raises(DataError, match=rf"{mentions}:1: mention g1 has no gold entity id \(XTREME blanks"):
        task.load_local(tmp_path, "test", "de")
    labels = folder / "wikinews_labels" / "test-de.json"
    labels.parent.mkdir()
    labels.write_text(json.dumps({"g1": ["Q64"]}))
    assert task.load_local(tmp_path, "test", "de") == [
        {"id": "g1", "query": "Berlin: { Berlin } ist schön.", "relevant": ["Q64"]}]
    _jsonl(mentions, [_context("en", "Berlin ist schön.", [("g1", "Berlin", "Q64")])])
    with pytest.raises(DataError, match=r"test-de.jsonl:1: a context in language 'en' in the file of 'de'"):
        task.load_local(tmp_path, "test", "de")
    with pytest.raises(DataError, match=r"no test mentions for 'fa': neither .*test-fa.jsonl .* nor "
                                        r".*wikinews_mentions-test.jsonl"):
        task.load_local(tmp_path, "test", "fa")


@pytest.mark.parametrize("record, message", [
    ('{"context": {"language": "en", "text": "Paris.", "sentence_spans": [{"start": 0, "end": 6}]}, '
     '"mentions": [{"example_id": "x", "entity_id": "Q1", "mention_span": {"start": 0, "end": 5, "text": "Lyon"}}]}',
     r"test.jsonl:2: mention x: text 'Lyon' is not at \[0, 5\] of the context"),
    ('{"context": {"language": "en", "text": "Paris.", "sentence_spans": [{"start": 0, "end": 60}]}, "mentions": []}',
     r"test.jsonl:2: context.sentence_spans: span \[0, 60\] is not inside the 6-character text"),
    ('{"context": {"language": "en", "text": "", "sentence_spans": []}, "mentions": []}',
     r"test.jsonl:2: empty context text"),
    ('{"context": {"language": "en"}}', r"test.jsonl:2: expected a 'mentions' list"),
    ('{"context": {"language": "en"}, "mentions": []}', r"test.jsonl:2: not a Mewsli-X mention record \(KeyError"),
    ('{"context": ', r"test.jsonl:2: not valid JSON"),
])
def test_bad_mention_records_name_file_and_line(tmp_path, record, message):
    folder = _release(tmp_path)
    path = folder / "wikinews_mentions-test.jsonl"
    path.write_text(path.read_text().splitlines()[0] + "\n" + record + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        get_task("mewslix").load_local(tmp_path, "test", "en")


@pytest.mark.parametrize("line, message", [
    (json.dumps(ENTITIES[0]), r"candidate_set_entities.jsonl:3: entity id 'Q90' appears twice"),
    (json.dumps({**ENTITIES[1], "sentence_spans": [{"start": 5, "end": 2}]}),
     r"candidate_set_entities.jsonl:3: not a Mewsli-X entity \(ValueError: sentence_spans: span \[5, 2\]"),
    (json.dumps({"entity_id": "Q1"}), r"candidate_set_entities.jsonl:3: not a Mewsli-X entity \(KeyError"),
    ("{", r"candidate_set_entities.jsonl:3: not valid JSON"),
])
def test_bad_candidates_name_file_and_line(tmp_path, line, message):
    folder = _release(tmp_path)
    path = folder / "candidate_set_entities.jsonl"
    path.write_text(path.read_text() + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        get_task("mewslix").load_local(tmp_path, "pool", "all")


def test_hub_files_read_like_the_local_release(tmp_path, monkeypatch):
    """izhx/mewsli-x's files (a per-language mentions file, the candidate set as .jsonl.tar.gz), here
    written from the fixtures: the Hub loader returns what the local loader does."""
    local = tmp_path / "local"
    folder = _release(local)
    hub = tmp_path / "hub"
    _jsonl(hub / "wikinews_mentions" / "en" / "test.jsonl",
           [r for r in map(json.loads, (folder / "wikinews_mentions-test.jsonl").read_text().splitlines())
            if r["context"]["language"] == "en"])
    with tarfile.open(hub / "candidate_entities.jsonl.tar.gz", "w:gz") as tar:
        tar.add(folder / "candidate_set_entities.jsonl", arcname="candidate_entities.jsonl")
    asked = []

    def fake_hub_file(repo, filename):
        asked.append((repo, filename))
        return hub / filename

    monkeypatch.setattr(mewslix, "hub_file", fake_hub_file)
    task = get_task("mewslix")
    assert task.load_hub("test", "en") == task.load_local(local, "test", "en")
    assert task.load_hub("pool", "all") == task.load_local(local, "pool", "all")
    assert asked == [("izhx/mewsli-x", "wikinews_mentions/en/test.jsonl"),
                     ("izhx/mewsli-x", "candidate_entities.jsonl.tar.gz")]


def test_hub_offline_says_so():
    with pytest.raises(DataError, match=r"cannot load 'wikinews_mentions/de/test.jsonl' of Hub dataset "
                                        r"'izhx/mewsli-x': the Hub is unreachable \(offline mode is on\)"):
        get_task("mewslix").load_hub("test", "de")
