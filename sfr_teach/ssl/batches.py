"""Two-stream training batches of random crops, repeatable per iteration (hence exact resume).

:class:`CropBatcher` turns labelled and unlabelled volumes into the batch of iteration ``it``::

    {"image": (B, 1, h, w, d) float32, "label": (Bl, h, w, d) int64,
     "pseudo": (Bu, h, w, d) int64 (only when every unlabelled volume has a pseudo-label array)}

The first Bl = ``labeled_bs`` items are labelled. Sampling is ``sfr_teach.data.TwoStreamBatchSampler``
(seeded; fast-forwarded on resume) and each item goes through ``sfr_teach.data.train_transform``
(pad, random crop, axial rot90 + flips, applied identically to image, label and pseudo-label) with a
random state derived from (seed, it, position) -- so batch ``it`` never depends on earlier iterations.
Both pieces are injectable (``transform``, ``sampler_factory``).
"""
from __future__ import annotations

import itertools
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from sfr_teach.data import TwoStreamBatchSampler, infinite_batches, train_transform


class CropBatcher:
    """Samples: dicts of channel-first numpy arrays (``image`` (1,H,W,D), ``label`` / ``pseudo`` (1,H,W,D)).

    ``labeled`` must carry "label"; ``unlabeled`` never does (ground truth of unlabelled volumes is
    not given to the trainer) and may carry "pseudo". ``unlabeled_bs`` = 0 gives labelled-only batches.
    """

    def __init__(
        self,
        labeled: Sequence[Dict[str, np.ndarray]],
        unlabeled: Sequence[Dict[str, np.ndarray]],
        patch_size: Sequence[int],
        labeled_bs: int,
        unlabeled_bs: int,
        seed: int = 0,
        transform: Optional[Callable[[dict], dict]] = None,
        sampler_factory: Optional[Callable[[], Iterator[List[int]]]] = None,
    ):
        self.samples = list(labeled) + list(unlabeled)
        self.n_labeled = len(labeled)
        self.labeled_bs, self.unlabeled_bs, self.seed = int(labeled_bs), int(unlabeled_bs), int(seed)
        self.transform = transform or train_transform(
            patch_size, keys=("image", "label", "pseudo"), label_keys=("label", "pseudo")
        )
        primary = list(range(self.n_labeled))
        secondary = list(range(self.n_labeled, len(self.samples)))
        self.sampler_factory = sampler_factory or (
            lambda: infinite_batches(
                TwoStreamBatchSampler(primary, secondary, self.labeled_bs + self.unlabeled_bs, self.unlabeled_bs, seed)
            )
        )
        self._stream: Optional[Iterator[List[int]]] = None
        self._next_it = 0

    def indices(self, it: int) -> List[int]:
        """Volume indices of batch ``it`` (labelled first); restarts the sampler when going back."""
        if self._stream is None or it < self._next_it:
            self._stream, self._next_it = self.sampler_factory(), 0
        if it > self._next_it:  # fast-forward (resume)
            next(itertools.islice(self._stream, it - self._next_it, it - self._next_it), None)
        self._next_it = it + 1
        return list(next(self._stream))

    def _crop(self, sample: dict, it: int, pos: int) -> dict:
        if hasattr(self.transform, "set_random_state"):
            self.transform.set_random_state(seed=(self.seed * 1_000_003 + it * 101 + pos) % (2**32))
        return self.transform(sample)

    def batch(self, it: int) -> Dict[str, torch.Tensor]:
        crops = [self._crop(self.samples[i], it, p) for p, i in enumerate(self.indices(it))]
        out = {"image": torch.stack([torch.as_tensor(c["image"]) for c in crops]).float()}
        out["label"] = torch.stack([torch.as_tensor(c["label"])[0] for c in crops[: self.labeled_bs]]).long()
        unl = crops[self.labeled_bs :]
        if unl and all("pseudo" in c for c in unl):
            out["pseudo"] = torch.stack([torch.as_tensor(c["pseudo"])[0] for c in unl]).long()
        return out
