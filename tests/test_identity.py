"""A result's identity is data: tags round-trip, display names are derived, rows sort by k."""
import pytest

from adapter_stilts.identity import ResultIdentity


def _ident(tasks, strategy="multitask", **kw):
    return ResultIdentity("me5-small", 12, "adapters", strategy, tuple(tasks), 400 * len(tasks), 42, 42, "xnli", **kw)


def test_tags_round_trip_and_tasks_are_a_sorted_set():
    ident = _ident(["squad", "mnli", "anli"])
    assert ident.intermediate_tasks == ("anli", "mnli", "squad") and ident.k == 3
    tags = ident.tags()
    assert tags["id.intermediate_tasks"] == "anli,mnli,squad" and tags["id.k"] == "3"
    assert ResultIdentity.from_tags(tags) == ident
    none = ResultIdentity("me5-small", 12, "adapters", "none", target_seed=42, target_task="xnli")
    assert ResultIdentity.from_tags(none.tags()) == none and none.intermediate_seed is None
    with pytest.raises(KeyError, match="id.model_layers"):
        ResultIdentity.from_tags({k: v for k, v in tags.items() if k != "id.model_layers"})


def test_display_name_is_derived_and_two_subsets_of_one_size_differ():
    a, b = _ident(["mnli", "squad", "anli"]), _ident(["mnli", "squad", "hellaswag"])
    assert a.display_name == b.display_name == "multitask3"
    assert a != b and a.setup() != b.setup()  # two rows, not one
    assert _ident(["mnli"], strategy="each").display_name == "mnli"
    assert a.setup().target_seed is None and a.baseline().strategy == "none"


def test_rows_sort_by_k_numerically():
    pool = [f"t{i:02d}" for i in range(10)]
    rows = [_ident(pool[:k]).setup() for k in (10, 2, 1)] + [_ident([], strategy="none").setup()]
    names = [r.display_name for r in sorted(rows, key=ResultIdentity.sort_key)]
    assert names == ["none", "t00", "multitask2", "multitask10"]  # not multitask10 before multitask2


def test_translated_intermediate_data_is_part_of_the_identity():
    english, translated = _ident(["mnli"], strategy="each"), _ident(["mnli"], strategy="each",
                                                                   intermediate_languages=("fr", "en", "de"))
    assert translated.intermediate_languages == ("de", "en", "fr")
    assert translated.tags()["id.intermediate_languages"] == "de,en,fr"
    assert ResultIdentity.from_tags(translated.tags()) == translated
    assert english.setup() != translated.setup() and translated.setup().intermediate_languages == ("de", "en", "fr")
    assert translated.columns()["intermediate_languages"] == "de,en,fr"
    assert english.columns()["intermediate_languages"] == ""
    # runs tagged before the field existed were English only
    old = {k: v for k, v in english.tags().items() if k != "id.intermediate_languages"}
    assert ResultIdentity.from_tags(old) == english and translated.baseline().intermediate_languages == ()
