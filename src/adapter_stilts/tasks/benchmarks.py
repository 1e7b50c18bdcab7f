"""The two named benchmarks as data: for each task, its official test languages (English included
where the benchmark scores it, so a task's average is the official one).

Sources (google-research/xtreme, read with the search tool):
- XTREME: TASK2LANGS of evaluate.py (order kept).
- XTREME-R: the repository at its XTREME-R release (commit 0918248): scripts/download_data.sh
  (UD v2.7 languages, PAN-X languages, XCOPA languages), utils_preprocess.py (PANX_LANGUAGES; the
  Tatoeba language map, which adds aze lit pol ukr ron), scripts/preprocess_udpos.sh. UD-POS adds
  lt pl uk wo ro (38; scripts/train_udpos.sh of the same commit omits wo, the download and
  preprocessing scripts and the paper's count of 38 include it). PAN-X adds qu pl uk az lt pa gu ro.
  XQuAD adds ro (xquad.ro.json, released after XTREME; the repository's scripts at that commit still
  fetch 11 languages, so the 12 rests on the paper and the XQuAD README).
  XTREME-R drops PAWS-X and BUCC and adds XCOPA and two retrieval tasks (10 tasks):
  Mewsli-X: ar de en es fa ja pl ro ta tr uk (the repository's HEAD, fetched and read with git:
  third_party/utils_mewslix.py MENTION_LANGUAGES, evaluate.py XTREME_R_TASK2LANGS['mewslix'],
  utils_preprocess.py MEWSLIX_INPUT_LANGUAGES, mock_test_data/labels/mewslix);
  LAReQA: ar de el en es hi ru th tr vi zh. evaluate.py lists no languages for 'lareqa' (its score
  is not computed there); evaluate_retrieval.py scores every file of the LAReQA release's xquad-r/
  folder, which holds these 11 (XQuAD's languages at XTREME time; XQuAD-R has no ro). A question's
  score is one language's, but it searches the pool of all 11.
"""
from __future__ import annotations

import difflib


def _langs(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_XNLI = _langs("ar bg de el en es fr hi ru sw th tr ur vi zh")
_UDPOS = _langs("af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th tl tr ur vi yo zh")
_PANX = _langs("ar he vi id jv ms tl eu ml ta te af nl en de el bn hi mr ur fa fr it pt es bg ru ja ka ko th sw "
               "yo my zh kk tr et fi hu")
_TATOEBA = _langs("ar he vi id jv tl eu ml ta te af nl de el bn hi mr ur fa fr it pt es bg ru ja ka ko th sw zh kk "
                  "tr et fi hu")
_XQUAD = _langs("en es de el ru tr ar vi th zh hi")
_MLQA = _langs("en es de ar hi vi zh")
_TYDIQA = _langs("en ar bn fi id ko ru sw te")

BENCHMARKS: dict[str, dict[str, tuple[str, ...]]] = {
    "xtreme": {
        "pawsx": _langs("de en es fr ja ko zh"),
        "xnli": _XNLI,
        "panx": _PANX,
        "udpos": _UDPOS,
        "bucc2018": _langs("de fr ru zh"),
        "tatoeba": _TATOEBA,
        "xquad": _XQUAD,
        "mlqa": _MLQA,
        "tydiqa": _TYDIQA,
    },
    "xtreme-r": {
        "xnli": _XNLI,
        "xcopa": _langs("et ht id it qu sw ta th tr vi zh"),
        "udpos": _UDPOS + _langs("lt pl uk wo ro"),
        "panx": _PANX + _langs("qu pl uk az lt pa gu ro"),
        "xquad": _XQUAD + ("ro",),
        "mlqa": _MLQA,
        "tydiqa": _TYDIQA,
        "tatoeba": _TATOEBA + _langs("az lt pl uk ro"),
        "mewslix": _langs("ar de en es fa ja pl ro ta tr uk"),
        "lareqa": _langs("ar de el en es hi ru th tr vi zh"),
    },
}


class UnknownBenchmarkError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


def _benchmark(name: str) -> dict[str, tuple[str, ...]]:
    if name not in BENCHMARKS:
        near = difflib.get_close_matches(name, list(BENCHMARKS), n=1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        raise UnknownBenchmarkError(f"unknown benchmark '{name}'.{hint} Known benchmarks: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def benchmark_tasks(benchmark: str) -> tuple[str, ...]:
    return tuple(_benchmark(benchmark))


def benchmark_languages(benchmark: str, task: str) -> tuple[str, ...]:
    """The official test languages of `task` in `benchmark`; an error if the task is not part of it."""
    tasks = _benchmark(benchmark)
    if task not in tasks:
        raise UnknownBenchmarkError(f"task '{task}' is not part of {benchmark}; its tasks: {', '.join(tasks)}")
    return tasks[task]
