"""Propagation through the graph neighbourhood, distilled into the model.

The served model of graph regularization sees no graph. APPNP (Gasteiger et
al., 2019, arXiv:1810.05997) reaches GNN accuracy by training an MLP `f`
whose outputs are averaged over each node's personalized-PageRank
neighbourhood, but it needs that neighbourhood at inference; GLNN (Zhang et
al., 2022, arXiv:2110.08727) shows that an MLP distilled from such a teacher
on every node (labeled or not) keeps most of its accuracy without the
graph. These two functions do both in one training step: the neighbourhood
prediction `z_i` is trained on the labels, and `f(x_i)` is pulled towards
it. See `nsl.configs.PropagationConfig`.
"""

from keras import ops


def neighborhood_prediction(sources, targets, weights=None, self_weight=0.5):
    """The weighted mean of a sample's prediction and its neighbours'.

    With `s_i` the sample's prediction (`[B, C]`), `t_ij` its neighbours'
    (`[B, N, C]` or `[B * N, C]` sample-major), `w_ij >= 0` their weights (0
    for padding) and `beta = self_weight`:

        z_i = beta * s_i + (1 - beta) * sum_j w_ij t_ij / sum_j w_ij

    and `z_i = s_i` for a sample whose weights are all 0 (no neighbour).
    With logits this is APPNP's propagated output (its personalized-PageRank
    average, truncated to the packed neighbours); with probabilities it is
    again a distribution.

    Args:
        sources: `[B, C]` predictions of the samples.
        targets: `[B, N, C]` or `[B * N, C]` predictions of the neighbours.
        weights: `[B, N]`, `[B * N]` or `[B * N, 1]`; None for all 1.
        self_weight: `beta` in [0, 1].

    Returns:
        `[B, C]` float32.

    Example:
    >>> s = np.array([[1., 0]], 'float32')
    >>> t = np.array([[[0., 1], [0, 3]]], 'float32')
    >>> z = nsl.lib.neighborhood_prediction(s, t, [[1., 3]], self_weight=0.5)
    >>> np.asarray(z).round(3).tolist()  # 0.5 * s + 0.5 * (1 * t0 + 3 * t1) / 4
    [[0.5, 1.25]]
    """
    sources = ops.cast(sources, "float32")
    batch, classes = ops.shape(sources)[0], sources.shape[-1]
    targets = ops.reshape(ops.cast(targets, "float32"), (batch, -1, classes))
    if weights is None:
        weights = ops.ones(ops.shape(targets)[:2], "float32")
    weights = ops.reshape(ops.cast(weights, "float32"), (batch, -1, 1))
    total = ops.sum(weights, axis=1)  # [B, 1]
    mean = ops.sum(weights * targets, axis=1) / ops.maximum(total, 1e-12)
    beta = ops.where(total > 0, self_weight, 1.0)
    return beta * sources + (1.0 - beta) * mean


def distillation_loss(teacher, student, from_logits=True, temperature=1.0):
    """`mean_i KL(stop_gradient(q_i) || p_i)`: the student pulled to the teacher.

    With logits, `q = softmax(teacher / T)` and `p = softmax(student)`; with
    probabilities `t`, `q = t^(1/T) / sum_c t_c^(1/T)` and `p` the student
    (both clipped to `[1e-7, 1]`). `T < 1` sharpens the teacher (as in
    self-training: the student is pushed to confident predictions where the
    teacher leans one way); `T = 1` keeps it. No gradient reaches the
    teacher, so the student moves towards it and not the other way (a loss
    symmetric in both is minimised by any shared constant prediction). The
    gradient with respect to the student is that of the cross-entropy
    `-sum_c q_ic log p_ic`; the value is 0 when `p = q`.

    Args:
        teacher: `[B, C]` logits or probabilities.
        student: `[B, C]`, the same kind.
        from_logits: whether both are logits.
        temperature: `T > 0`.

    Returns:
        A float32 scalar, the mean over the `B` rows.

    Example:
    >>> q = np.array([[0.5, 0.5]], 'float32')
    >>> p = np.array([[0.8, 0.2]], 'float32')
    >>> loss = nsl.lib.distillation_loss(q, p, from_logits=False)
    >>> print(f"{float(loss):.4f}")  # 0.5 log(0.5/0.8) + 0.5 log(0.5/0.2)
    0.2231
    """
    teacher = ops.stop_gradient(ops.cast(teacher, "float32"))
    student = ops.cast(student, "float32")
    if from_logits:
        log_q = ops.log_softmax(teacher / temperature, axis=-1)
        log_p = ops.log_softmax(student, axis=-1)
    else:
        log_q = ops.log_softmax(
            ops.log(ops.clip(teacher, 1e-7, 1.0)) / temperature, axis=-1)
        log_p = ops.log(ops.clip(student, 1e-7, 1.0))
    return ops.mean(ops.sum(ops.exp(log_q) * (log_q - log_p), axis=-1))
