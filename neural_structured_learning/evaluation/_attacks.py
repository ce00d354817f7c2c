"""Attack specifications: FGSM and PGD in the L-infinity, L2 and L1 norms."""

import dataclasses
import numbers

from neural_structured_learning._core import validation as _validation

NORMS = ("infinity", "l2", "l1")
METHODS = ("fgsm", "pgd")
_NORM_ALIASES = {"infinity": "infinity", "inf": "infinity",
                 "linf": "infinity", "l-inf": "infinity", "l_inf": "infinity",
                 "l2": "l2", "l1": "l1"}
# Short names of the norms in attack labels.
NORM_LABELS = {"infinity": "Linf", "l2": "L2", "l1": "L1"}


def canonical_norm(norm):
    """Returns 'infinity', 'l2' or 'l1' for a norm name (or `NormType`)."""
    value = getattr(norm, "value", norm)
    key = str(value).lower() if isinstance(value, str) else value
    if key not in _NORM_ALIASES:
        raise ValueError(
            f"`norm` must be one of {', '.join(map(repr, NORMS))} (or "
            f"'linf', 'inf'). Received: norm={norm!r}")
    return _NORM_ALIASES[key]


def _check_eps(eps):
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (
            eps >= 0 and eps < float("inf")):
        raise ValueError(f"`eps` must be a finite number >= 0. Received: "
                         f"eps={eps!r}")
    return float(eps)


@dataclasses.dataclass(frozen=True)
class Attack:
    """One untargeted attack: FGSM or PGD within a norm ball of radius `eps`.

    With `g(x) = grad_x L(f(x), y)` the gradient of the attack loss and
    `d(g) = argmax_{||d|| <= 1} <g, d>` (`sign(g)` for L-infinity,
    `g / ||g||_2` for L2), each example moves as

        FGSM:  x' = clip(x + eps * d(g(x)))
        PGD:   x_0 = clip(x + u),  u ~ Uniform(ball(eps))  (random_init)
               x_{t+1} = clip(x + P_eps(x_t + step_size * d(g(x_t)) - x))
               for t = 0 .. steps - 1

    where `P_eps` projects onto the `eps`-ball around the original `x` and
    `clip` onto the declared input range. The norm is taken per example,
    jointly over all of its features. PGD is repeated `restarts` times from
    independent random starts; an example counts as robust only if every
    restart fails.

    Args:
        method: 'fgsm' or 'pgd'.
        eps: radius of the ball (>= 0; 0 means no perturbation).
        norm: 'infinity' (aliases 'linf', 'inf'), 'l2' or 'l1'.
        steps: number of gradient steps; 1 for FGSM.
        step_size: PGD step size; default `2.5 * eps / steps`, which lets a
            walk cross the ball and come back (Madry et al., 2018). Ignored
            by FGSM, whose step is `eps`.
        restarts: number of random starts (PGD with `random_init` only).
        random_init: start from a random point of the ball. Default: True
            for PGD, False for FGSM.

    References:
        Goodfellow et al., 2015, "Explaining and harnessing adversarial
        examples": https://arxiv.org/abs/1412.6572
        Madry et al., 2018, "Towards deep learning models resistant to
        adversarial attacks": https://arxiv.org/abs/1706.06083

    Example:
    >>> nsl.evaluation.Attack("pgd", eps=0.3, steps=40).label
    'PGD-40 Linf eps=0.3'
    """

    method: str
    eps: float
    norm: str = "infinity"
    steps: int = 1
    step_size: float = None
    restarts: int = 1
    random_init: bool = None

    def __post_init__(self):
        method = str(self.method).lower()
        if method not in METHODS:
            raise ValueError(
                f"`method` must be one of {', '.join(map(repr, METHODS))}. "
                f"Received: method={self.method!r}")
        eps = _check_eps(self.eps)
        steps = _validation.check_int("steps", self.steps, 1)
        restarts = _validation.check_int("restarts", self.restarts, 1)
        if method == "fgsm" and steps != 1:
            raise ValueError(
                "FGSM takes exactly one step of size `eps`; use "
                f"method='pgd' for several steps. Received: steps={steps}")
        step_size = self.step_size
        if step_size is not None and (isinstance(step_size, bool) or not (
                isinstance(step_size, numbers.Real) and step_size > 0)):
            raise ValueError(f"`step_size` must be > 0 (or None). Received: "
                             f"step_size={step_size!r}")
        random_init = (method == "pgd" if self.random_init is None
                       else bool(self.random_init))
        if restarts > 1 and not random_init:
            raise ValueError(
                "`restarts` > 1 needs `random_init=True`: without a random "
                "start every restart repeats the same deterministic attack. "
                f"Received: restarts={restarts}, random_init=False")
        values = dict(method=method, eps=eps, norm=canonical_norm(self.norm),
                      steps=steps, restarts=restarts, random_init=random_init,
                      step_size=None if step_size is None else float(
                          step_size))
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def alpha(self):
        """The step size actually used: `eps` for FGSM, else `step_size`
        (default `2.5 * eps / steps`)."""
        if self.method == "fgsm":
            return self.eps
        if self.step_size is not None:
            return self.step_size
        return 2.5 * self.eps / self.steps

    @property
    def label(self):
        """A short name, e.g. 'PGD-40 Linf eps=0.3 x5' (x5: 5 restarts)."""
        method = "FGSM" if self.method == "fgsm" else f"PGD-{self.steps}"
        text = f"{method} {NORM_LABELS[self.norm]} eps={self.eps:g}"
        return text + (f" x{self.restarts}" if self.restarts > 1 else "")

    def replace(self, **changes):
        """Returns a copy with some fields changed (and re-validated)."""
        return dataclasses.replace(self, **changes)

    def adv_neighbor_config(self, clip=None):
        """The `nsl.configs.AdvNeighborConfig` running this attack.

        Args:
            clip: optional `(min, max)` of the valid input range.

        Returns:
            An `AdvNeighborConfig`; `None` when `eps == 0` (nothing to do).
        """
        # pylint: disable=import-outside-toplevel
        from neural_structured_learning.configs import configs
        if self.eps == 0:
            return None
        low, high = clip if clip is not None else (None, None)
        return configs.AdvNeighborConfig(
            adv_step_size=self.alpha, adv_grad_norm=self.norm,
            clip_value_min=low, clip_value_max=high,
            pgd_iterations=self.steps, pgd_epsilon=self.eps,
            random_init=self.random_init)


def fgsm(eps, norm="infinity"):
    """An FGSM attack (one step of size `eps` along `d(g)`); see `Attack`."""
    return Attack("fgsm", eps=eps, norm=norm)


def pgd(eps, norm="infinity", *, steps=40, step_size=None, restarts=1,
        random_init=True):
    """A PGD attack (`steps` projected steps, random start); see `Attack`."""
    return Attack("pgd", eps=eps, norm=norm, steps=steps, step_size=step_size,
                  restarts=restarts, random_init=random_init)


def attack_grid(eps, norm="infinity", *, methods=METHODS, steps=40,
                step_size=None, restarts=1):
    """FGSM and PGD attacks at each radius of `eps`, in one norm.

    Args:
        eps: a radius or a sequence of radii.
        norm: the norm of every attack.
        methods: which of 'fgsm' and 'pgd' to include.
        steps: PGD steps.
        step_size: PGD step size (default `2.5 * eps / steps`).
        restarts: PGD random restarts.

    Returns:
        A list of `Attack`, radii in increasing order, FGSM before PGD.

    Example:
    >>> for attack in nsl.evaluation.attack_grid([0.1, 0.3], steps=10):
    ...     print(attack.label)
    FGSM Linf eps=0.1
    PGD-10 Linf eps=0.1
    FGSM Linf eps=0.3
    PGD-10 Linf eps=0.3
    """
    radii = [eps] if isinstance(eps, numbers.Real) else list(eps)
    if isinstance(methods, str):
        methods = (methods,)
    unknown = [m for m in methods if str(m).lower() not in METHODS]
    if unknown:
        raise ValueError(
            f"`methods` must be among {', '.join(map(repr, METHODS))}. "
            f"Received: methods={tuple(methods)!r}")
    methods = [m.lower() for m in methods]
    attacks = []
    for radius in sorted(_check_eps(r) for r in radii):
        for method in METHODS:
            if method not in methods:
                continue
            if method == "fgsm":
                attacks.append(fgsm(radius, norm))
            else:
                attacks.append(pgd(radius, norm, steps=steps,
                                   step_size=step_size, restarts=restarts))
    return attacks
