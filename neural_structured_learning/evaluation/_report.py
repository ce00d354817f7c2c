"""Robustness tables as Markdown, and PNG plots of them."""

import collections

from neural_structured_learning.evaluation import _checks

MARKDOWN_COLUMNS = ("model", "source", "label", "accuracy", "n", "output",
                    "purpose", "check", "seconds", "grad_evals")


def _cell(column, value):
    if column == "accuracy" and isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|")


def to_markdown(rows, columns=MARKDOWN_COLUMNS, *, checks=True):
    """Formats a robustness table as Markdown.

    Args:
        rows: a list of dicts (from `evaluate_robustness`).
        columns: the keys to show, in order.
        checks: append a list of the sanity checks and their outcome.

    Returns:
        A string: the table, then (with `checks`) one line per check.

    Example:
    >>> print(nsl.evaluation.to_markdown([{'model': 'm', 'accuracy': 0.5}],
    ...                                  ['model', 'accuracy'], checks=False))
    | model | accuracy |
    |---|---|
    | m | 0.5000 |
    """
    columns = [c for c in columns if any(c in r for r in rows)]
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "---|" * len(columns)]
    for row in rows:
        check = str(row.get("check", ""))
        cells = []
        for column in columns:
            value = row.get(column)
            if column == "check" and check.startswith("FAIL"):
                value = "**FAIL**"
            cells.append(_cell(column, value))
        lines.append("| " + " | ".join(cells) + " |")
    if checks:
        findings = _checks.sanity_checks(rows)
        if findings:
            lines.append("")
            lines.append("Sanity checks (gradient masking):")
            for f in findings:
                mark = "ok  " if f["status"] == "pass" else "FAIL"
                lines.append(f"- [{mark}] {f['check']}: {f['message']}")
        for row in rows:
            if row.get("notes"):
                lines.append(f"\nNotes ({row.get('model', '')}): "
                             f"{row['notes']}")
    return "\n".join(lines)


def _pyplot():
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise ImportError("Plots need matplotlib: pip install "
                          "matplotlib") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt


def plot_accuracy_vs_eps(rows, path, *, title=None):
    """Plots accuracy against eps, one panel per norm, and saves a PNG.

    One line per (model, source, attack, steps); each starts at eps 0 with
    the model's clean accuracy. Rows added for the sanity checks are left
    out; failed checks are marked with a red x.

    Args:
        rows: a list of dicts (from `evaluate_robustness`).
        path: the PNG file to write.
        title: optional figure title.

    Returns:
        `path`.
    """
    plt = _pyplot()
    clean = {r["model"]: r["accuracy"] for r in rows if r["attack"] == "clean"}
    lines = collections.defaultdict(list)
    for r in rows:
        if r["attack"] == "clean" or r.get("purpose", "attack") != "attack":
            continue
        method = "FGSM" if r["attack"] == "fgsm" else f"PGD-{r['steps']}"
        if r.get("restarts", 1) > 1:
            method += f" x{r['restarts']}"
        key = (r["norm"], f"{r['model']} / {method} / {r['source']}")
        lines[key].append(r)
    norms = list(dict.fromkeys(norm for norm, _ in lines))
    if not norms:
        raise ValueError("`rows` has no attack rows to plot.")
    fig, axes = plt.subplots(1, len(norms), figsize=(5.5 * len(norms), 4.2),
                             squeeze=False)
    for ax, norm in zip(axes[0], norms):
        for (line_norm, name), points in lines.items():
            if line_norm != norm:
                continue
            points.sort(key=lambda r: r["eps"])
            model = points[0]["model"]
            xs = [0.0] + [r["eps"] for r in points]
            ys = [clean.get(model, float("nan"))] + [
                r["accuracy"] for r in points]
            style = "--" if points[0]["source"] != "white-box" else "-"
            ax.plot(xs, ys, style, marker="o", markersize=3, label=name)
            bad = [r for r in points if str(r.get("check")).startswith(
                "FAIL")]
            ax.plot([r["eps"] for r in bad], [r["accuracy"] for r in bad],
                    "x", color="red", markersize=9)
        ax.set_xlabel(f"eps ({norm} norm)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _image(x):
    """An example as an image for imshow: (H, W) or (H, W, 3)."""
    if x.ndim == 3 and x.shape[-1] == 1:
        return x[..., 0]
    if x.ndim == 2 or (x.ndim == 3 and x.shape[-1] in (3, 4)):
        return x
    side = int(round(x.size ** 0.5))
    if side * side == x.size:
        return x.reshape(side, side)
    return x.reshape(1, -1)


def plot_adversarial_examples(path, x, y, x_adv, predictions, *, n=10,
                              clip=None, title=None, class_names=None):
    """A grid of clean and perturbed examples with the models' predictions.

    Column `j` shows example `j`: on top the clean input with its label, below
    the perturbed input with each model's prediction on it (red when wrong).

    Args:
        path: the PNG file to write.
        x: clean inputs `(n, ...)` (images `(H, W)`, `(H, W, 1)` or
            `(H, W, 3)`; other shapes are drawn as square or flat images).
        y: int labels `(n,)`.
        x_adv: perturbed inputs, shaped like `x`.
        predictions: dict `{model name: predicted labels on x_adv}`.
        n: number of examples to show.
        clip: optional `(min, max)` display range.
        title: optional figure title.
        class_names: optional names of the classes.

    Returns:
        `path`.
    """
    plt = _pyplot()
    n = min(n, len(x))
    name = (lambda c: class_names[c]) if class_names else str
    vmin, vmax = clip if clip is not None else (None, None)
    fig, axes = plt.subplots(2, n, figsize=(1.25 * n + 0.5, 3.4),
                             squeeze=False)
    for j in range(n):
        top, bottom = axes[0][j], axes[1][j]
        top.imshow(_image(x[j]), cmap="gray", vmin=vmin, vmax=vmax)
        top.set_title(f"y={name(int(y[j]))}", fontsize=7)
        bottom.imshow(_image(x_adv[j]), cmap="gray", vmin=vmin, vmax=vmax)
        wrong = any(int(p[j]) != int(y[j]) for p in predictions.values())
        bottom.set_title(
            "\n".join(f"{m}: {name(int(p[j]))}"
                      for m, p in predictions.items()),
            fontsize=6, color="red" if wrong else "black")
        top.axis("off")
        bottom.axis("off")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
