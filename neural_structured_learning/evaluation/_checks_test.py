"""Tests for _checks.py (on hand-written tables)."""

import warnings

import pytest

from neural_structured_learning.evaluation import _checks


def _row(attack, accuracy, eps=0.3, steps=None, source="white-box",
         purpose="attack", n=1000, norm="infinity"):
    steps = steps if steps is not None else (1 if attack == "fgsm" else 40)
    label = ("FGSM" if attack == "fgsm" else f"PGD-{steps}") + f" eps={eps}"
    return {"model": "m", "source": source, "attack": attack, "label": label,
            "norm": norm, "eps": eps, "steps": steps, "restarts": 1,
            "random_init": attack == "pgd", "loss": "crossentropy", "n": n,
            "accuracy": accuracy, "purpose": purpose, "check": "-"}


def _statuses(rows, **kwargs):
    return {(f["check"], f["rows"]): f["status"]
            for f in _checks.sanity_checks(rows, **kwargs)}


def test_healthy_table_passes():
    rows = [_row("fgsm", 0.6), _row("pgd", 0.4),
            _row("pgd", 0.45, steps=10, purpose="sanity: fewer steps"),
            _row("pgd", 0.0, eps=1.0, steps=10, purpose="sanity: large eps"),
            _row("pgd", 0.7, source="base")]
    assert _statuses(rows) == {
        ("pgd_vs_fgsm", (1, 0)): "pass",
        ("more_steps", (1, 2)): "pass",
        ("large_eps", (3,)): "pass",
        ("white_box_vs_transfer", (1, 4)): "pass"}


def test_each_check_fires():
    rows = [_row("fgsm", 0.2), _row("pgd", 0.5),
            _row("pgd", 0.3, steps=10, purpose="sanity: fewer steps"),
            _row("pgd", 0.9, eps=1.0, steps=10, purpose="sanity: large eps"),
            _row("pgd", 0.1, source="base")]
    assert set(_statuses(rows).values()) == {"FAIL"}
    messages = {f["check"]: f["message"]
                for f in _checks.sanity_checks(rows)}
    assert messages["pgd_vs_fgsm"].startswith(
        "PGD-40 eps=0.3 accuracy 0.5000 > FGSM eps=0.3 accuracy 0.2000: ")
    assert "more steps should never help" in messages["more_steps"]
    assert "gradient masking" in messages["large_eps"]
    assert messages["white_box_vs_transfer"].startswith(
        "PGD-40 eps=0.3 white-box accuracy 0.5000 > accuracy 0.1000 when "
        "transferred from base")


def test_slack_is_one_example_or_tolerance():
    # 1 example of 10 is within the slack; 2 are not.
    assert _statuses([_row("fgsm", 0.5, n=10), _row("pgd", 0.6, n=10)]) == {
        ("pgd_vs_fgsm", (1, 0)): "pass"}
    assert _statuses([_row("fgsm", 0.5, n=10), _row("pgd", 0.7, n=10)]) == {
        ("pgd_vs_fgsm", (1, 0)): "FAIL"}
    assert _statuses([_row("fgsm", 0.5), _row("pgd", 0.504)]) == {
        ("pgd_vs_fgsm", (1, 0)): "pass"}
    assert _statuses([_row("fgsm", 0.5), _row("pgd", 0.504)],
                     tolerance=0.0) == {("pgd_vs_fgsm", (1, 0)): "FAIL"}


def test_transfer_attacks_skip_the_pgd_and_steps_checks():
    # Iterative attacks often transfer worse than one step: no failure.
    rows = [_row("fgsm", 0.5, source="base"), _row("pgd", 0.7, source="base"),
            _row("pgd", 0.6, steps=10, source="base")]
    assert _checks.sanity_checks(rows) == []


def test_groups_do_not_mix_eps_norms_or_sources():
    rows = [_row("fgsm", 0.2, eps=0.1), _row("pgd", 0.5, eps=0.3),
            _row("fgsm", 0.2, norm="l2"), _row("pgd", 0.5, source="base")]
    assert [f["check"] for f in _checks.sanity_checks(rows)] == [
        "white_box_vs_transfer"]  # rows 1 and 3 only.


def test_mark_rows_and_warn():
    rows = [_row("fgsm", 0.2), _row("pgd", 0.5), _row("fgsm", 0.9, eps=0.1)]
    with pytest.warns(_checks.RobustnessWarning,
                      match=r"Sanity check 'pgd_vs_fgsm' failed: PGD-40"):
        _checks.mark_rows(rows, _checks.sanity_checks(rows), warn=True)
    assert rows[0]["check"].startswith("FAIL: PGD-40 eps=0.3 accuracy")
    assert rows[1]["check"] == rows[0]["check"]
    assert rows[2]["check"] == "-"
    rows = [_row("fgsm", 0.6), _row("pgd", 0.4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _checks.mark_rows(rows, _checks.sanity_checks(rows), warn=True)
    assert [r["check"] for r in rows] == ["ok", "ok"]


def _aa_row(attack, accuracy, eps=0.3):
    return dict(_row("pgd", accuracy, eps=eps, purpose="autoattack"),
                attack=attack, label=f"{attack} eps={eps}")


def test_autoattack_checks_flag_black_box_wins_and_a_weak_ensemble():
    healthy = [_row("pgd", 0.50), _aa_row("apgd-ce", 0.46),
               _aa_row("apgd-t", 0.45), _aa_row("square", 0.45),
               _aa_row("autoattack", 0.45)]
    assert _statuses(healthy) == {
        ("black_box_vs_white_box", (2, 3)): "pass",
        ("autoattack_vs_pgd", (4, 0)): "pass"}
    # Square (run on what APGD missed) fools 5% more: gradient masking.
    masked = [_row("pgd", 0.50), _aa_row("apgd-ce", 0.49),
              _aa_row("apgd-t", 0.48), _aa_row("square", 0.43),
              _aa_row("autoattack", 0.43)]
    assert _statuses(masked)[("black_box_vs_white_box", (2, 3))] == "FAIL"
    # Any gradient attack run before Square counts, APGD-DLR too.
    dlr = [_aa_row("apgd-dlr", 0.49), _aa_row("square", 0.43)]
    assert _statuses(dlr) == {("black_box_vs_white_box", (0, 1)): "FAIL"}
    weak = [_row("pgd", 0.40), _aa_row("apgd-ce", 0.46),
            _aa_row("autoattack", 0.46)]
    assert _statuses(weak)[("autoattack_vs_pgd", (2, 0))] == "FAIL"
