"""A contrastive (InfoNCE) loss between samples and their graph neighbours."""

import math

from keras import ops


def neighbor_info_nce(sources, targets, weights=None, temperature=0.5):
    """InfoNCE of each sample against its neighbours, other samples negative.

    With `h_i` the L2-normalised sources (`[B, D]`, flattened after the
    batch axis), `t_ij` the L2-normalised targets (neighbour `j` of sample
    `i`), `T` the temperature and `w_ij` the weights (0 for padding):

        loss_ij = -log(exp(<h_i, t_ij> / T) /
                       (exp(<h_i, t_ij> / T) + sum_{k != i} exp(<h_i, h_k> / T)))
        loss = sum_ij w_ij loss_ij / max(sum_ij w_ij, 1e-12)

    i.e. the cross-entropy of picking the neighbour among itself and the
    batch's other samples. It is 0 for a batch of one sample (no negative).

    Args:
        sources: `[B, ...]` (e.g. a hidden layer of the samples).
        targets: `[B, N, ...]`, or `[B * N, ...]` sample-major (as
            `nsl.lib.unpack_neighbor_features` merges them).
        weights: `[B, N]`, `[B * N]` or `[B * N, 1]`; None for all 1.
        temperature: `T > 0`.

    Returns:
        A float32 scalar.

    Example:
    >>> h = np.array([[1., 0], [0, 1]], 'float32')     # two samples
    >>> t = np.array([[[1., 0]], [[0, 1]]], 'float32')  # each its own twin
    >>> loss = nsl.lib.neighbor_info_nce(h, t, temperature=1.0)
    >>> print(f"{float(loss):.4f}")  # log(1 + exp(-1)): cos 1 vs cos 0.
    0.3133
    """
    batch = ops.shape(sources)[0]
    # The feature size from the static shape: the batch size may be unknown
    # when the step is traced (TensorFlow), and reshape takes one -1 only.
    dim = math.prod(sources.shape[1:])
    h = ops.reshape(ops.cast(sources, "float32"), (batch, dim))
    t = ops.reshape(ops.cast(targets, "float32"), (batch, -1, dim))
    h = h / ops.maximum(ops.norm(h, axis=-1, keepdims=True), 1e-12)
    t = t / ops.maximum(ops.norm(t, axis=-1, keepdims=True), 1e-12)
    positive = ops.einsum("bd,bnd->bn", h, t) / temperature
    negative = ops.matmul(h, ops.transpose(h)) / temperature
    # Exclude k = i; -1e9 (not -inf) keeps a batch of one finite.
    negative = ops.where(ops.eye(batch, dtype="bool"), -1e9, negative)
    negative = ops.logsumexp(negative, axis=1, keepdims=True)
    losses = ops.logaddexp(positive, negative) - positive
    if weights is None:
        weights = ops.ones_like(losses)
    weights = ops.reshape(ops.cast(weights, "float32"), ops.shape(losses))
    return ops.sum(weights * losses) / ops.maximum(ops.sum(weights), 1e-12)
