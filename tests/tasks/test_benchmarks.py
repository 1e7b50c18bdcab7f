"""The benchmark language lists: official sizes, every task registered, clear errors."""
import pytest

from adapter_stilts.tasks.benchmarks import BENCHMARKS, UnknownBenchmarkError, benchmark_languages, benchmark_tasks
from adapter_stilts.tasks.lookup import get_task

SIZES = {  # XTREME (Hu et al. 2020) and XTREME-R (Ruder et al. 2021), English included where scored
    "xtreme": {"xnli": 15, "pawsx": 7, "udpos": 33, "panx": 40, "bucc2018": 4, "tatoeba": 36, "xquad": 11,
               "mlqa": 7, "tydiqa": 9},
    "xtreme-r": {"xnli": 15, "udpos": 38, "panx": 48, "xquad": 12, "mlqa": 7, "tydiqa": 9, "tatoeba": 41,
                 "xcopa": 11, "mewslix": 11, "lareqa": 11},
}


def test_lists_have_the_official_sizes_and_no_duplicates():
    assert {b: {t: len(langs) for t, langs in tasks.items()} for b, tasks in BENCHMARKS.items()} == SIZES
    assert all(len(set(langs)) == len(langs) for tasks in BENCHMARKS.values() for langs in tasks.values())


@pytest.mark.parametrize("benchmark, task", [(b, t) for b, tasks in BENCHMARKS.items() for t in tasks])
def test_every_benchmark_task_is_registered(benchmark, task):
    assert get_task(task).role == "target"


def test_xtreme_r_has_its_ten_tasks():
    """Ruder et al. 2021: XNLI, XCOPA, UD-POS, WikiANN-NER, XQuAD, MLQA, TyDiQA-GoldP, Mewsli-X,
    LAReQA, Tatoeba; the retrieval tasks' languages from google-research/xtreme (benchmarks.py)."""
    assert sorted(benchmark_tasks("xtreme-r")) == sorted(
        ["xnli", "xcopa", "udpos", "panx", "xquad", "mlqa", "tydiqa", "mewslix", "lareqa", "tatoeba"])
    assert benchmark_languages("xtreme-r", "mewslix") == tuple("ar de en es fa ja pl ro ta tr uk".split())
    assert set(benchmark_languages("xtreme-r", "lareqa")) == set(BENCHMARKS["xtreme"]["xquad"])  # XQuAD's 11, no ro
    for task in ("mewslix", "lareqa"):
        assert get_task(task).languages == benchmark_languages("xtreme-r", task)


def test_xtreme_r_extends_xtreme_where_both_have_a_task():
    shared = set(BENCHMARKS["xtreme"]) & set(BENCHMARKS["xtreme-r"])
    assert shared == {"xnli", "udpos", "panx", "xquad", "mlqa", "tydiqa", "tatoeba"}
    for task in shared:
        assert BENCHMARKS["xtreme-r"][task][:len(BENCHMARKS["xtreme"][task])] == BENCHMARKS["xtreme"][task]
    assert set(BENCHMARKS["xtreme-r"]["udpos"]) - set(BENCHMARKS["xtreme"]["udpos"]) == {"lt", "pl", "uk", "wo", "ro"}
    assert set(BENCHMARKS["xtreme-r"]["panx"]) - set(BENCHMARKS["xtreme"]["panx"]) == {
        "qu", "pl", "uk", "az", "lt", "pa", "gu", "ro"}


@pytest.mark.parametrize("task", ["xnli", "pawsx", "udpos", "panx", "tatoeba"])
def test_registered_hub_defaults_are_xtremes_lists(task):
    assert set(get_task(task).languages) == set(BENCHMARKS["xtreme"][task])


@pytest.mark.parametrize("task", ["pawsx", "udpos", "panx"])  # some XNLI languages are held back
def test_offline_data_covers_xtreme(data_dir, task):
    assert set(get_task(task).local_languages(data_dir)) == set(BENCHMARKS["xtreme"][task])


def test_accessors_and_errors():
    assert benchmark_tasks("xtreme")[:2] == ("pawsx", "xnli") and "xcopa" in benchmark_tasks("xtreme-r")
    assert benchmark_languages("xtreme", "bucc2018") == ("de", "fr", "ru", "zh")
    with pytest.raises(UnknownBenchmarkError, match=r"unknown benchmark 'xtreme_r'. Did you mean 'xtreme-r'\? "
                                                     r"Known benchmarks: xtreme, xtreme-r"):
        benchmark_languages("xtreme_r", "xnli")
    with pytest.raises(UnknownBenchmarkError, match="Known benchmarks: xtreme, xtreme-r"):
        benchmark_tasks("glue")
    with pytest.raises(UnknownBenchmarkError, match="task 'pawsx' is not part of xtreme-r; its tasks: xnli"):
        benchmark_languages("xtreme-r", "pawsx")
