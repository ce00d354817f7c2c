"""Sanity checks of a robustness table against gradient masking.

A model can look robust because the attack cannot use its gradients
(gradient masking: zero, noisy or misleading gradients) rather than because
it is robust. These checks, from Carlini et al. (2019), "On evaluating
adversarial robustness" (https://arxiv.org/abs/1902.06705), and Athalye et
al. (2018), "Obfuscated gradients give a false sense of security"
(https://arxiv.org/abs/1802.00420), catch the common symptoms.
"""

import collections
import warnings

CHECKS = {
    "pgd_vs_fgsm": "PGD accuracy <= FGSM accuracy at the same eps",
    "more_steps": "more PGD steps never raise accuracy",
    "large_eps": "accuracy ~0 at an eps that reaches any input",
    "white_box_vs_transfer": "white-box accuracy <= transfer accuracy",
    "black_box_vs_white_box": "the gradient-free Square attack fools no "
                              "example the gradient attacks missed",
    "autoattack_vs_pgd": "AutoAttack accuracy <= PGD accuracy at the same "
                         "eps",
}


class RobustnessWarning(UserWarning):
    """A sanity check failed, or the model's outputs need attention."""


def _slack(tolerance, *rows):
    """Allowed excess accuracy: `tolerance`, and at least one example."""
    return max([tolerance] + [1.0 / r["n"] for r in rows])


def _attack_rows(rows):
    return [(i, r) for i, r in enumerate(rows) if r["attack"] != "clean"]


def _name(row):
    """The attack's label, with its source when it is a transfer attack."""
    source = row.get("source", "white-box")
    return row["label"] + ("" if source == "white-box" else
                           f" (from {source})")


def _finding(check, ok, indices, message):
    return {"check": check, "status": "pass" if ok else "FAIL",
            "rows": tuple(indices), "message": message}


def _pgd_vs_fgsm(rows, tolerance):
    groups = collections.defaultdict(lambda: {"fgsm": [], "pgd": []})
    for i, r in _attack_rows(rows):
        if r["purpose"] == "attack" and r["source"] == "white-box":
            groups[(r["model"], r["norm"], r["eps"], r["loss"])][
                r["attack"]].append(i)
    for group in groups.values():
        for f in group["fgsm"]:
            for p in group["pgd"]:
                a, b = rows[p], rows[f]
                ok = a["accuracy"] <= b["accuracy"] + _slack(tolerance, a, b)
                yield _finding(
                    "pgd_vs_fgsm", ok, (p, f),
                    f"{_name(a)} accuracy {a['accuracy']:.4f} "
                    f"{'<=' if ok else '>'} {_name(b)} accuracy "
                    f"{b['accuracy']:.4f}" + ("" if ok else (
                        ": several projected steps should be at least as "
                        "strong as one; suspect gradient masking (a "
                        "misleading local gradient) or a too small PGD "
                        "step size")))


def _more_steps(rows, tolerance):
    groups = collections.defaultdict(list)
    for i, r in _attack_rows(rows):
        if r["attack"] == "pgd" and r["source"] == "white-box":
            groups[(r["model"], r["norm"], r["eps"], r["loss"],
                    r["restarts"], r["random_init"])].append(i)
    for indices in groups.values():
        pairs = [(few, many) for few in indices for many in indices
                 if rows[few]["steps"] < rows[many]["steps"]]
        for few, many in sorted(pairs, key=lambda p: (
                rows[p[1]]["steps"], rows[p[0]]["steps"])):
            a, b = rows[many], rows[few]
            ok = a["accuracy"] <= b["accuracy"] + _slack(tolerance, a, b)
            yield _finding(
                "more_steps", ok, (many, few),
                f"{_name(a)} accuracy {a['accuracy']:.4f} "
                f"{'<=' if ok else '>'} {_name(b)} accuracy "
                f"{b['accuracy']:.4f}" + ("" if ok else (
                    ": more steps should never help the model; suspect "
                    "noisy, shattered or randomised gradients")))


def _large_eps(rows, max_accuracy):
    for i, r in _attack_rows(rows):
        if r["purpose"] == "sanity: large eps":
            ok = r["accuracy"] <= max_accuracy
            yield _finding(
                "large_eps", ok, (i,),
                f"{r['label']} (reaches any input in range) accuracy "
                f"{r['accuracy']:.4f} {'<=' if ok else '>'} {max_accuracy}"
                + ("" if ok else (
                    ": an attack that can reach any input should fool the "
                    "model on nearly every example; the attack cannot "
                    "follow the gradient (zero or uninformative gradients: "
                    "gradient masking)")))


def _white_box_vs_transfer(rows, tolerance):
    groups = collections.defaultdict(dict)
    for i, r in _attack_rows(rows):
        if r["purpose"] == "attack":
            groups[(r["model"], r["label"], r["loss"])][r["source"]] = i
    for group in groups.values():
        white = group.get("white-box")
        if white is None:
            continue
        for source, t in group.items():
            if source == "white-box":
                continue
            a, b = rows[white], rows[t]
            ok = a["accuracy"] <= b["accuracy"] + _slack(tolerance, a, b)
            yield _finding(
                "white_box_vs_transfer", ok, (white, t),
                f"{a['label']} white-box accuracy {a['accuracy']:.4f} "
                f"{'<=' if ok else '>'} accuracy {b['accuracy']:.4f} when "
                f"transferred from {source}" + ("" if ok else (
                    ": attacking the model's own gradients should be "
                    "stronger than borrowing another model's; suspect "
                    "gradient masking")))


def _autoattack_groups(rows):
    groups = collections.defaultdict(dict)
    for i, r in _attack_rows(rows):
        if r["purpose"] == "autoattack":
            groups[(r["model"], r["norm"], r["eps"])][r["attack"]] = i
    return groups


def _black_box_vs_white_box(rows, tolerance):
    # In the ensemble each attack runs on the examples all earlier ones
    # missed, so Square's row is below the row of the gradient attack run
    # just before it (any of them: APGD-CE, APGD-DLR, APGD-T, FAB-T) by
    # exactly the examples only the black-box attack fooled.
    for group in _autoattack_groups(rows).values():
        square = group.get("square")
        white = sorted(i for name, i in group.items()
                       if name not in ("square", "autoattack")
                       and square is not None and i < square)
        if not white:
            continue
        a, b = rows[white[-1]], rows[square]
        ok = b["accuracy"] >= a["accuracy"] - _slack(tolerance, a, b)
        yield _finding(
            "black_box_vs_white_box", ok, (white[-1], square),
            f"{b['label']} (black-box) accuracy {b['accuracy']:.4f} "
            f"{'>=' if ok else '<'} white-box {a['label']} accuracy "
            f"{a['accuracy']:.4f}" + ("" if ok else (
                ": a random search that never reads the gradient found "
                "adversarial examples the gradient attacks missed; the "
                "gradients mislead the attacks (gradient masking), so trust "
                "the black-box number")))


def _autoattack_vs_pgd(rows, tolerance):
    pgd = collections.defaultdict(list)
    for i, r in _attack_rows(rows):
        if (r["attack"] == "pgd" and r["source"] == "white-box"
                and r["purpose"] == "attack"):
            pgd[(r["model"], r["norm"], r["eps"])].append(i)
    for key, group in _autoattack_groups(rows).items():
        if "autoattack" not in group:
            continue
        a = rows[group["autoattack"]]
        for p in pgd.get(key, ()):
            b = rows[p]
            ok = a["accuracy"] <= b["accuracy"] + _slack(tolerance, a, b)
            yield _finding(
                "autoattack_vs_pgd", ok, (group["autoattack"], p),
                f"{a['label']} accuracy {a['accuracy']:.4f} "
                f"{'<=' if ok else '>'} {b['label']} accuracy "
                f"{b['accuracy']:.4f}" + ("" if ok else (
                    ": the ensemble (which includes a stronger PGD) should "
                    "be at least as strong as PGD")))


def sanity_checks(rows, *, tolerance=0.005, large_eps_max_accuracy=0.05):
    """Checks a robustness table (from `evaluate_robustness`) for signs of
    gradient masking.

    * `pgd_vs_fgsm`: `acc(PGD) <= acc(FGSM) + slack`, white-box, at the
      same model, norm and eps.
    * `more_steps`: `acc(PGD-k2) <= acc(PGD-k1) + slack` for every
      `k2 > k1`, white-box, other settings equal.
    * `large_eps`: `acc <= large_eps_max_accuracy` for the 'sanity: large
      eps' rows (an eps that reaches any input of the clip range).
    * `white_box_vs_transfer`: `acc(white-box) <= acc(transfer) + slack` for
      the same attack.
    * `black_box_vs_white_box` (AutoAttack rows): Square, run after APGD-CE
      and APGD-T on what they missed, fools at most `slack` more: a
      black-box attack beating white-box ones means gradient masking.
    * `autoattack_vs_pgd`: `acc(AutoAttack) <= acc(PGD) + slack` at the same
      model, norm and eps.

    `slack = max(tolerance, 1 / n)`: one example, or `tolerance`.

    The first two apply to white-box attacks only: crafted on another
    model, more steps fit that model more closely and often transfer *less*
    well (Kurakin et al., 2017, https://arxiv.org/abs/1611.01236), which is
    no sign of masking.

    Args:
        rows: the table, a list of dicts with the keys of
            `evaluate_robustness`.
        tolerance: allowed excess accuracy (absolute).
        large_eps_max_accuracy: the most accuracy allowed at a huge eps.

    Returns:
        A list of findings, dicts with `check` (a key of `CHECKS`), `status`
        ('pass' or 'FAIL'), `rows` (indices into `rows`) and `message`.
    """
    findings = []
    findings += _pgd_vs_fgsm(rows, tolerance)
    findings += _more_steps(rows, tolerance)
    findings += _large_eps(rows, large_eps_max_accuracy)
    findings += _white_box_vs_transfer(rows, tolerance)
    findings += _black_box_vs_white_box(rows, tolerance)
    findings += _autoattack_vs_pgd(rows, tolerance)
    return findings


def mark_rows(rows, findings, warn=False):
    """Writes the findings into the rows' `check` column.

    A row gets 'FAIL: <messages>' if a check involving it failed, 'ok' if
    every check involving it passed, and keeps '-' otherwise.

    Args:
        rows: the table (modified in place).
        findings: from `sanity_checks`.
        warn: also raise a `RobustnessWarning` per failure.
    """
    failures = collections.defaultdict(list)
    for finding in findings:
        for i in finding["rows"]:
            if finding["status"] == "FAIL":
                failures[i].append(finding["message"])
            elif rows[i]["check"] == "-":
                rows[i]["check"] = "ok"
        if warn and finding["status"] == "FAIL":
            warnings.warn(f"Sanity check {finding['check']!r} failed: "
                          f"{finding['message']}", RobustnessWarning,
                          stacklevel=3)
    for i, messages in failures.items():
        rows[i]["check"] = "FAIL: " + "; ".join(dict.fromkeys(messages))
