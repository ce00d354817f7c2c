"""Batches mixing labeled and unlabeled rows, for semi-supervised training.

Used with `VirtualAdversarialRegularization` (or any `RegularizedModel`
that marks unlabeled rows): unlabeled rows carry `unlabeled_label`.
"""

import keras
import numpy as np
from keras import tree

from neural_structured_learning._core import naming
from neural_structured_learning._core import validation


def _check_same_features(x_labeled, x_unlabeled):
    """Raises unless both inputs have the same structure and row shapes."""
    if isinstance(x_labeled, dict) or isinstance(x_unlabeled, dict):
        if not (isinstance(x_labeled, dict)
                and isinstance(x_unlabeled, dict)):
            raise ValueError(
                "`x_labeled` and `x_unlabeled` must both be dicts or both "
                f"arrays. Received: {type(x_labeled).__name__} and "
                f"{type(x_unlabeled).__name__}.")
        if set(x_labeled) != set(x_unlabeled):
            raise ValueError(
                "`x_labeled` and `x_unlabeled` must have the same keys. "
                "Only in x_labeled: "
                f"{sorted(set(x_labeled) - set(x_unlabeled))}; only in "
                f"x_unlabeled: {sorted(set(x_unlabeled) - set(x_labeled))}.")
    try:
        tree.assert_same_structure(x_labeled, x_unlabeled)
    except (ValueError, TypeError) as error:
        raise ValueError(
            "`x_labeled` and `x_unlabeled` must have the same structure: "
            f"{error}") from None
    paths = ([f"[{k!r}]" for k in sorted(x_labeled)]
             if isinstance(x_labeled, dict) else None)
    labeled = tree.flatten(x_labeled)
    unlabeled = tree.flatten(x_unlabeled)
    for i, (a, b) in enumerate(zip(labeled, unlabeled)):
        shape_a, shape_b = np.shape(a)[1:], np.shape(b)[1:]
        if shape_a != shape_b:
            where = (paths[i] if paths and len(paths) == len(labeled)
                     else (f"[{i}]" if len(labeled) > 1 else ""))
            raise ValueError(
                f"`x_unlabeled{where}` rows have shape {shape_b}, but "
                f"`x_labeled{where}` rows have shape {shape_a}: unlabeled "
                "features must match the labeled ones after the batch axis "
                "(same width).")


class LabeledUnlabeledBatches(keras.utils.PyDataset):
    """Batches mixing labeled and unlabeled rows, for semi-supervised `fit`.

    Each batch holds `labeled_batch_size` labeled rows (reshuffled every
    time they run out) followed by `unlabeled_batch_size` unlabeled rows
    (one pass over them per epoch, shuffled), whose labels are
    `unlabeled_label`. Deterministic for a given `seed`.

    Args:
        x_labeled: labeled inputs (array, or dict of arrays) `[n_l, ...]`.
        y_labeled: their integer labels `[n_l]`.
        x_unlabeled: unlabeled inputs with the structure of `x_labeled`.
        labeled_batch_size: labeled rows per batch.
        unlabeled_batch_size: unlabeled rows per batch.
        unlabeled_label: label value of unlabeled rows.
        seed: shuffling seed.
        **kwargs: passed to `keras.utils.PyDataset` (e.g. `workers`).

    Raises:
        ValueError: batch sizes that are not integers >= 1, unlabeled
            features whose keys or row shapes differ from the labeled ones,
            no labeled rows, or labeled rows carrying `unlabeled_label`.
    """

    def __init__(self, x_labeled, y_labeled, x_unlabeled,
                 labeled_batch_size=32, unlabeled_batch_size=128,
                 unlabeled_label=naming.UNLABELED, seed=0, **kwargs):
        super().__init__(**kwargs)
        validation.check_int("labeled_batch_size", labeled_batch_size, 1)
        validation.check_int("unlabeled_batch_size", unlabeled_batch_size, 1)
        _check_same_features(x_labeled, x_unlabeled)
        self.x_labeled = x_labeled
        self.y_labeled = np.asarray(y_labeled)
        self.x_unlabeled = x_unlabeled
        self.n_labeled = len(self.y_labeled)
        self.n_unlabeled = len(tree.flatten(x_unlabeled)[0])
        if self.n_labeled == 0:
            raise ValueError("`x_labeled` is empty: VAT needs some labels.")
        if len(tree.flatten(x_labeled)[0]) != self.n_labeled:
            raise ValueError(
                "`x_labeled` and `y_labeled` have different lengths: "
                f"{len(tree.flatten(x_labeled)[0])} vs {self.n_labeled}.")
        if unlabeled_label is not None:
            marked = self.y_labeled.reshape(self.n_labeled, -1) == (
                unlabeled_label)
            marked = (marked.any(axis=1) if self.y_labeled.dtype.kind in "iu"
                      else marked.all(axis=1))
            if marked.any():
                raise ValueError(
                    f"`y_labeled` holds the unlabeled marker "
                    f"unlabeled_label={unlabeled_label!r} in "
                    f"{int(marked.sum())} row(s) (e.g. row "
                    f"{int(np.flatnonzero(marked)[0])}): those rows would be "
                    "trained as unlabeled. Fix the labels or pass another "
                    "`unlabeled_label`.")
        self.labeled_batch_size = labeled_batch_size
        self.unlabeled_batch_size = unlabeled_batch_size
        self.unlabeled_label = unlabeled_label
        self.seed = seed
        self._epoch = 0
        self._orders()

    def _orders(self):
        rng = np.random.default_rng([self.seed, self._epoch])
        batches = len(self)
        need = batches * self.labeled_batch_size
        reps = -(-need // self.n_labeled)
        self._labeled_order = np.concatenate(
            [rng.permutation(self.n_labeled) for _ in range(reps)])[:need]
        self._unlabeled_order = rng.permutation(self.n_unlabeled)

    def __len__(self):
        return max(1, self.n_unlabeled // self.unlabeled_batch_size)

    def on_epoch_end(self):
        self._epoch += 1
        self._orders()

    def __getitem__(self, index):
        lab = self._labeled_order[index * self.labeled_batch_size:
                                  (index + 1) * self.labeled_batch_size]
        unl = self._unlabeled_order[index * self.unlabeled_batch_size:
                                    (index + 1) * self.unlabeled_batch_size]
        x = tree.map_structure(
            lambda a, b: np.concatenate([a[lab], b[unl]]), self.x_labeled,
            self.x_unlabeled)
        y = np.concatenate([
            self.y_labeled[lab],
            np.full((len(unl),) + self.y_labeled.shape[1:],
                    self.unlabeled_label, self.y_labeled.dtype)])
        return x, y
