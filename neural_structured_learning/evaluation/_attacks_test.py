"""Tests for _attacks.py."""

import pytest

from neural_structured_learning.evaluation import _attacks


def test_fgsm_defaults():
    attack = _attacks.fgsm(0.3)
    assert (attack.method, attack.norm, attack.steps, attack.restarts,
            attack.random_init, attack.alpha) == ("fgsm", "infinity", 1, 1,
                                                  False, 0.3)
    assert attack.label == "FGSM Linf eps=0.3"


def test_pgd_default_step_size_is_2_5_eps_over_steps():
    attack = _attacks.pgd(0.3, steps=40)
    assert attack.random_init
    assert attack.alpha == pytest.approx(2.5 * 0.3 / 40)
    assert _attacks.pgd(0.3, steps=40, step_size=0.01).alpha == 0.01
    assert _attacks.pgd(2.0, "l2", steps=10, restarts=5).label == (
        "PGD-10 L2 eps=2 x5")


@pytest.mark.parametrize("alias", ["linf", "inf", "Linf", "infinity"])
def test_norm_aliases(alias):
    assert _attacks.fgsm(0.1, alias).norm == "infinity"


def test_adv_neighbor_config_runs_the_attack():
    config = _attacks.pgd(0.3, steps=40).adv_neighbor_config((0.0, 1.0))
    assert (config.adv_step_size, config.adv_grad_norm, config.pgd_iterations,
            config.pgd_epsilon, config.random_init, config.clip_value_min,
            config.clip_value_max) == (pytest.approx(0.01875), "infinity", 40,
                                       0.3, True, 0.0, 1.0)
    assert _attacks.fgsm(0.0).adv_neighbor_config() is None


def test_attack_grid_orders_by_eps_then_method():
    labels = [a.label for a in _attacks.attack_grid([0.3, 0.1], steps=10)]
    assert labels == ["FGSM Linf eps=0.1", "PGD-10 Linf eps=0.1",
                      "FGSM Linf eps=0.3", "PGD-10 Linf eps=0.3"]
    assert [a.method for a in _attacks.attack_grid(0.2, methods="pgd")] == [
        "pgd"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="fgsm", eps=-0.1),
     r"`eps` must be a finite number >= 0. Received: eps=-0.1"),
    (dict(method="fgsm", eps=float("inf")), r"Received: eps=inf"),
    (dict(method="cw", eps=0.1),
     r"`method` must be one of 'fgsm', 'pgd'. Received: method='cw'"),
    (dict(method="fgsm", eps=0.1, norm="l3"),
     r"`norm` must be one of 'infinity', 'l2', 'l1' .* Received: norm='l3'"),
    (dict(method="fgsm", eps=0.1, steps=5),
     r"FGSM takes exactly one step .* Received: steps=5"),
    (dict(method="pgd", eps=0.1, steps=0),
     r"`steps` must be an integer >= 1. Received: steps=0"),
    (dict(method="pgd", eps=0.1, restarts=0),
     r"`restarts` must be an integer >= 1. Received: restarts=0"),
    (dict(method="pgd", eps=0.1, step_size=-1.0),
     r"`step_size` must be > 0 \(or None\). Received: step_size=-1.0"),
    (dict(method="pgd", eps=0.1, restarts=3, random_init=False),
     r"`restarts` > 1 needs `random_init=True`"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _attacks.Attack(**kwargs)


def test_attack_grid_bad_arguments():
    with pytest.raises(ValueError, match=r"Received: eps=-0.2"):
        _attacks.attack_grid([0.1, -0.2])
    with pytest.raises(ValueError, match=r"`methods` must be among"):
        _attacks.attack_grid([0.1], methods=("fgsm", "bim"))
