import pytest

from adapter_stilts.tasks.readers import DataError, read_conllu, read_jsonl, read_tsv


def test_conllu_skips_multiword_tokens_and_empty_nodes(tmp_path):
    p = tmp_path / "x.conllu"
    p.write_text("# text = Im Haus\n1-2\tIm\t_\t_\t_\t_\t_\t_\t_\t_\n1\tIn\tin\tADP\t_\t_\t3\tcase\t_\t_\n"
                 "2\tdem\tder\tDET\t_\t_\t3\tdet\t_\t_\n2.1\tx\tx\tX\t_\t_\t_\t_\t_\t_\n3\tHaus\tHaus\tNOUN\t_\t_\t0\troot\t_\t_\n\n")
    assert read_conllu(p) == [(["In", "dem", "Haus"], ["ADP", "DET", "NOUN"])]


def test_conllu_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.conllu"
    p.write_text("# c\n1\tHello\thello\tINTJ\t_\t_\t0\troot\t_\t_\n2\tbroken line\n")
    with pytest.raises(DataError, match=r"bad.conllu:3: a CoNLL-U token line has 10"):
        read_conllu(p)


def test_jsonl_bad_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(DataError, match=r"d.jsonl:2: not valid JSON"):
        list(read_jsonl(p))


def test_tsv_too_few_columns(tmp_path):
    p = tmp_path / "t.tsv"
    p.write_text("a\tb\tc\nonly one\n")
    with pytest.raises(DataError, match=r"t.tsv:2: expected 3 tab-separated columns, got 1"):
        list(read_tsv(p, 3))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="missing data file"):
        list(read_tsv(tmp_path / "nope.tsv", 2))


def test_squad_answer_outside_its_context_names_file_line_and_question(tmp_path):
    import json

    from adapter_stilts.tasks.catalog.qa import read_squad_file

    good = {"id": "q1", "question": "Who?", "answers": [{"text": "Ann", "answer_start": 0}]}
    bad = {"id": "q2", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 40}]}
    doc = {"data": [{"title": "t", "paragraphs": [{"context": "Ann lives in Paris.", "qas": [good, bad]}]}]}
    p = tmp_path / "xquad.de.json"
    p.write_text(json.dumps(doc, indent=1))
    line = next(i for i, text in enumerate(p.read_text().splitlines(), 1) if '"q2"' in text)
    with pytest.raises(DataError, match=rf"xquad.de.json:{line}: question q2: answer 'Paris' is not at character 40"):
        read_squad_file(p)
