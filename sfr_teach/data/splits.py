"""Labelled / unlabelled / test splits, the semi-supervised LA protocol.

"N labelled" = the first N names of the training list. The test set is the official test list when
there is one; otherwise the LAST ``val`` names of the training list are held out as a validation
set (never trained on). The unlabelled set is every other training name.

Cross-validation (``fold=k``): the training list is cut into consecutive blocks of ``val`` names;
block ``k`` is the test set and the labelled volumes are the first ``labeled`` names of what remains,
in list order. On LA (80 names, val 16) the five folds cover every volume once as a test case, and
fold 4 is the default validation split (the last 16 names).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

from .volume import DataError


@dataclass
class Split:
    """Names of the volumes in each role. test_source: "test.list" | "validation"."""

    labeled: List[str]
    unlabeled: List[str]
    test: List[str]
    test_source: str

    def __repr__(self) -> str:
        return (
            f"Split(labeled={len(self.labeled)}, unlabeled={len(self.unlabeled)}, "
            f"test={len(self.test)} from {self.test_source})"
        )


def make_split(
    train_names: Sequence[str],
    test_names: Optional[Sequence[str]],
    labeled: int,
    val: int = 16,
    source: str = "train.list",
    fold: Optional[int] = None,
) -> Split:
    """Split ``train_names`` (ordered) into labelled / unlabelled / test.

    labeled: first ``labeled`` names; test: ``test_names`` if given, else the last ``val`` names
    (then excluded from the unlabelled set), or with ``fold=k`` the k-th block of ``val`` names
    (labelled = the first ``labeled`` names outside it). Raises :class:`DataError` naming ``source``.
    """
    train = list(train_names)
    labeled, val = int(labeled), int(val)
    if fold is not None:
        if test_names is not None:
            raise DataError(f"{source}: fold={fold} rotates a validation split, but a test list exists; "
                            "drop the fold (the official test list is the test set)")
        n_folds = len(train) // max(val, 1)
        if not 0 <= int(fold) < n_folds:
            raise DataError(f"{source}: fold={fold} but {len(train)} names hold {n_folds} folds of {val}; "
                            f"use 0 <= fold < {n_folds}")
        k = int(fold)
        test = train[k * val:(k + 1) * val]
        rest = train[:k * val] + train[(k + 1) * val:]
        if labeled < 1 or labeled > len(rest):
            raise DataError(f"{source}: labeled={labeled} with fold {fold}: use 1 <= labeled <= {len(rest)}")
        return Split(rest[:labeled], rest[labeled:], test, f"validation fold {k}")
    if labeled < 1:
        raise DataError(
            f"{source}: empty labelled set (labeled={labeled}); semi-supervised training needs at least "
            "one labelled volume: use labeled >= 1"
        )
    if test_names is not None:
        if labeled > len(train):
            raise DataError(
                f"{source}: labeled={labeled} but the list holds only {len(train)} names; use labeled <= {len(train)}"
            )
        return Split(train[:labeled], train[labeled:], list(test_names), "test.list")
    if val < 1:
        raise DataError(
            f"{source}: no test list and val={val}: a validation set of at least 1 volume is needed "
            "(use val >= 1 or provide a test list)"
        )
    if labeled + val > len(train):
        raise DataError(
            f"{source}: labeled + val = {labeled} + {val} = {labeled + val} exceeds the {len(train)} names in "
            f"the list; use labeled <= {len(train) - val} or a smaller val"
        )
    test = train[len(train) - val:]
    held = set(test)
    unlabeled = [n for n in train[labeled:] if n not in held]
    return Split(train[:labeled], unlabeled, test, "validation")
