"""Notebook 02's exercises: solutions, checkers and folded answers (see glassbox.journal.exercises).

Open this file when stuck; the notebook runs each checker against your function, or, while your
function is still a stub, against the solution here.
"""
import torch

from glassbox.studies import find_median


# ---- 2. The median label


def my_median(tokens: torch.Tensor) -> torch.Tensor:
    middle = tokens.shape[1] // 2  # 3: three numbers below it, three above
    return tokens.sort(dim=1).values[:, middle]


def check_my_median(fn, lists: torch.Tensor) -> None:
    got, want, ranked = fn(lists), find_median.list_targets(lists), lists.sort(dim=1).values
    assert isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}"
    assert got.shape == want.shape, f"expected one median per list, shape {tuple(want.shape)}; got {tuple(got.shape)}: reduce over dim 1"
    assert not torch.equal(got, lists[:, 3]), "you took the middle *position* of the unsorted list: sort each list first"
    assert not torch.equal(got, lists.sort(dim=0).values[:, 3]), "you sorted along dim 0 (across lists): sort each list, dim=1"
    assert not (torch.equal(got, ranked[:, 2]) or torch.equal(got, ranked[:, 4])), \
        "off by one: with 7 numbers the median is at index 3 (0-based) of the sorted list"
    assert not torch.equal(got, lists.float().mean(1).round().long()), "that is the rounded mean, not the median"
    dedup = torch.tensor([sorted(set(row))[len(set(row)) // 2] for row in lists.tolist()])
    assert not torch.equal(got, dedup), "you dropped repeated values (torch.unique?): a number that occurs twice counts twice"
    bad = (got != want).nonzero().flatten()
    assert not len(bad), (f"{len(bad)} of {len(want)} wrong, the first at list {bad[0].item()}, {lists[bad[0]].tolist()}: "
                          f"expected {int(want[bad[0]])}, got {int(got[bad[0]])}")


# ---- 3. The multiset key


def my_multiset_key(tokens: torch.Tensor) -> torch.Tensor:
    key = torch.zeros(len(tokens), dtype=torch.int64)
    for digit in tokens.sort(dim=1).values.long().T:  # smallest value first: it ends up the most significant
        key = key * 50 + digit
    return key


def check_my_multiset_key(fn, lists: torch.Tensor, seed: int) -> None:
    shuffled = lists[:, torch.randperm(lists.shape[1], generator=torch.Generator().manual_seed(seed))]
    got, want = fn(lists), find_median.multiset_keys(lists)
    assert isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}"
    assert got.shape == want.shape and got.dtype == torch.int64, \
        f"expected int64 {tuple(want.shape)}, got {got.dtype} {tuple(got.shape)}"
    assert torch.equal(fn(shuffled), got), "the key changes when the list is shuffled: sort each list first"
    assert len(got.unique()) == len(want.unique()), \
        f"{len(want.unique())} different multisets get only {len(got.unique())} keys: give every sorted value its own base-50 digit"
    reversed_digits = (lists.sort(dim=1).values.long() * 50 ** torch.arange(lists.shape[1])).sum(1)
    assert not torch.equal(got, reversed_digits), "a valid key, but the digits are reversed: make the smallest value the most significant"
    bad = (got != want).nonzero().flatten()
    assert not len(bad), (f"{len(bad)} of {len(want)} keys differ, the first for list {bad[0].item()}, {lists[bad[0]].tolist()}: "
                          f"expected {int(want[bad[0]])}, got {int(got[bad[0]])}")


# ---- Folded answers of the "predict, then run" exercises, filled from the run's findings

ANSWERS = {
    1: """
The hardest family is `{exercise_d32_hardest_family[family]}` ({exercise_d32_hardest_family[accuracy]:.2%}). Its
{exercise_d32_hardest_family[errors]} errors come from only {exercise_d32_hardest_family[distinct_multisets]} different
multisets, and {exercise_d32_hardest_family[top_multiset_share]:.0%} of them are one list,
{exercise_d32_hardest_family[top_multiset]}, in its various orders. A family's accuracy counts lists, not kinds of list:
a family whose generator can produce only a few distinct multisets repeats each of them many times, so one list wrong
in many of its orders costs the family several points. This is the mirror image of section 4's caveat (repeated *seen*
lists make a small family look perfect; here one repeated *wrong* list makes it look bad).
{exercise_d32_hardest_family[off_by_one_share]:.0%} of these errors are off by one. Why the 32-wide model misses this
list is open; notebook 03's tools (the OV table, the logit attribution) are the way in. This answer describes the
`median_d32` checkpoint this run loaded: another training seed may find another family hardest, so read it as one
model's weak spot, not the task's.
""",
    4: """
On the first 5 numbers of each list the model answers their median {exercise_shorter_lists[5][median]:.1%} of the time,
on the first 3 {exercise_shorter_lists[3][median]:.1%} (on all 7: {exercise_shorter_lists[7][median]:.1%}). On 6 numbers,
where no single middle number exists, its answer lies between the two middle numbers (inclusive)
{exercise_shorter_lists[6][between_middle_two]:.1%} of the time: the lower one {exercise_shorter_lists[6][lower_middle]:.0%},
the upper one {exercise_shorter_lists[6][upper_middle]:.0%} (a list whose two middle numbers are equal counts for both).
In the committed full run nothing in the trained model is tied to the count of seven: trained on 7-number lists
only, it finds the median of shorter odd-length lists too. Notebook 03 finds why: the head averages over whatever
it is given, and what each number writes into the logits sums to a peak at the median of any odd count, and to a
plateau between the two middle numbers of an even one. (In a smoke run the model has trained for a few steps only,
and these shares are low.)
""",
}
