"""Every code block of README.md and docs/*.md runs as written.

The ```python and ```bash (or ```sh) blocks of a page run in order, as a
reader would paste them: python blocks share one interpreter (names defined
in one block are seen by the next), bash blocks run with `bash -eo pipefail`.
Each page runs in a fresh temporary directory holding links to the
repository's `examples/`, `benchmarks/`, `scripts/` and environments
(`.venv`, `.venv-beam`, `.venv-nsl14`; so `python examples/x.py` works and
files the blocks write land in the temporary directory), with this interpreter's `bin/` first on PATH (`python` and `nsl`
are the test's), `NSL_DOCS_TEST=1` and `NSL_DATA_DIR` passed through.
Every fence must name its language: `python`, `bash` and `sh` run; `text`,
`json` and `toml` do not.

Directives, in HTML comments (invisible on the rendered page) on the lines
just before a fence:

* `<!-- docs-test: skip: REASON -->`: the block does not run here (several
  hosts, a GPU, a download); each one is reported as a skipped test with its
  reason (`pytest -rs`).
* `<!-- docs-test: sub OLD => NEW -->`: replace the text OLD by NEW before
  running (fewer epochs or examples); OLD must occur in the block. The
  substitution is visible next to the block, so the page says what the test
  changed.
* `<!-- docs-test: setup` ... `-->`: Python code run (in the page's
  interpreter) before the block, e.g. to write the small input files the
  block names.
* `<!-- docs-test: output atol=A rtol=R -->` before a ```text block: every
  non-empty line of it must appear, in order, in what the preceding block
  printed; text must match exactly (runs of spaces are one space) and each
  number within `atol + rtol * |expected|` (defaults 0). This is how the
  numbers a page quotes are checked.

Run one page with
`python -m pytest tests/docs_test.py -k README` (add `-s` to watch it).
"""

import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
PAGES = ["README.md"] + sorted(
    str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))
RUN_LANGUAGES = {"python": "python", "bash": "bash", "sh": "bash"}
TEXT_LANGUAGES = {"text", "json", "toml"}
# Linked into each page's directory (the environments when they exist), so
# commands written from the repository root run as written.
LINKED = ("examples", "benchmarks", "scripts", ".venv", ".venv-beam",
          ".venv-nsl14")
PAGE_TIMEOUT_S = 900

_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->", re.S)
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


@dataclasses.dataclass
class Block:
    """One fenced block of a page and the directives before it."""
    page: str
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skip: str | None = None
    subs: list = dataclasses.field(default_factory=list)
    setup: str = ""
    output: dict | None = None  # {"atol": float, "rtol": float}

    @property
    def where(self):
        return f"{self.page}:{self.line}"

    @property
    def runs(self):
        return self.language in RUN_LANGUAGES and self.skip is None


def _directives(lines, fence_index):
    """The docs-test directives in the comments right before a fence."""
    end = fence_index
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    start = end
    # Take whole comments, possibly several, ending just above the fence.
    while start > 0 and lines[start - 1].rstrip().endswith("-->"):
        opening = start - 1
        while opening >= 0 and "<!--" not in lines[opening]:
            opening -= 1
        if opening < 0 or "docs-test:" not in lines[opening]:
            break
        start = opening
    text = "\n".join(lines[start:end])
    return [m.group(1) for m in _DIRECTIVE.finditer(text)]


def _apply(block, directive):
    head, _, rest = directive.replace("\n", " ", 1).partition(" ")
    head = head.rstrip(":")
    if directive.startswith("skip"):
        block.skip = directive.partition(":")[2].strip() or "no reason given"
    elif head == "sub":
        old, sep, new = rest.partition(" => ")
        if not sep:
            raise ValueError(f"{block.where}: `sub` needs 'OLD => NEW', "
                             f"got {directive!r}")
        block.subs.append((old, new))
    elif head == "setup":
        block.setup += directive[len("setup"):].strip("\n") + "\n"
    elif head == "output":
        tolerances = {"atol": 0.0, "rtol": 0.0}
        for item in rest.split():
            key, _, value = item.partition("=")
            if key not in tolerances:
                raise ValueError(f"{block.where}: unknown output option "
                                 f"{key!r} (expected atol= or rtol=)")
            tolerances[key] = float(value)
        block.output = tolerances
    else:
        raise ValueError(f"{block.where}: unknown docs-test directive "
                         f"{directive!r} (expected skip:, sub, setup or "
                         "output)")


def parse_page(page, text):
    """Splits a Markdown page into its fenced blocks, with directives."""
    lines = text.split("\n")
    blocks, i = [], 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, language = match.groups()
        body, j = [], i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][len(indent):] if lines[j].startswith(indent)
                        else lines[j])
            j += 1
        if j == len(lines):
            raise ValueError(f"{page}:{i + 1}: unclosed code fence")
        block = Block(page, i + 1, language, "\n".join(body) + "\n")
        for directive in _directives(lines, i):
            _apply(block, directive)
        for old, new in block.subs:
            if old not in block.code:
                raise ValueError(f"{block.where}: `sub` text {old!r} is not "
                                 "in the block")
            block.code = block.code.replace(old, new)
        blocks.append(block)
        i = j + 1
    return blocks


def match_output(expected, printed, atol=0.0, rtol=0.0):
    """Checks that `expected`'s lines appear, in order, in `printed`.

    Returns None when they do, else a message naming the first line that
    was not found.
    """
    def split(line):
        line = " ".join(line.split())
        return _NUMBER.split(line), [float(x) for x in _NUMBER.findall(line)]

    def same(want, got):
        (want_text, want_numbers), (got_text, got_numbers) = want, got
        return (want_text == got_text
                and len(want_numbers) == len(got_numbers)
                and all(abs(a - b) <= atol + rtol * abs(a)
                        for a, b in zip(want_numbers, got_numbers)))

    got_lines = [split(line) for line in printed.splitlines() if line.strip()]
    position = 0
    for line in expected.splitlines():
        if not line.strip():
            continue
        want = split(line)
        while position < len(got_lines) and not same(want, got_lines[position]):
            position += 1
        if position == len(got_lines):
            return (f"expected line {line.strip()!r} (atol={atol}, "
                    f"rtol={rtol}) not found in order in the output")
        position += 1
    return None


_DRIVER = r'''
import contextlib, io, json, subprocess, sys, traceback
blocks = json.load(open(sys.argv[1]))
results, namespace = [], {"__name__": "__main__"}

class Tee(io.TextIOBase):
    def __init__(self, stream):
        self.stream, self.parts = stream, []
    def write(self, text):
        self.parts.append(text)
        return self.stream.write(text)
    def flush(self):
        self.stream.flush()

for block in blocks:
    print(f"\n===== {block['where']} ({block['language']})", flush=True)
    tee = Tee(sys.stdout)
    error = None
    try:
        with contextlib.redirect_stdout(tee):
            if block["setup"]:
                exec(compile(block["setup"], block["where"] + " (setup)",
                             "exec"), namespace)
            if block["language"] == "python":
                exec(compile(block["code"], block["where"], "exec"), namespace)
            else:
                done = subprocess.run(["bash", "-eo", "pipefail", "-c",
                                       block["code"]], text=True,
                                      stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT)
                print(done.stdout, end="")
                if done.returncode:
                    error = f"exit status {done.returncode}"
    except BaseException:  # pylint: disable=broad-except
        error = traceback.format_exc()
    sys.stdout.flush()
    results.append({"where": block["where"], "output": "".join(tee.parts),
                    "error": error})
    json.dump(results, open(sys.argv[2], "w"))
    if error:
        break
'''


def _run_page(page, blocks):
    """Runs a page's blocks; returns one result dict per block that ran."""
    runnable = [dataclasses.asdict(b) | {"where": b.where}
                for b in blocks if b.runs]
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="nsl_docs_"))
    try:
        for name in LINKED:
            if (REPO / name).exists():
                (workdir / name).symlink_to(REPO / name)
        (workdir / "blocks.json").write_text(json.dumps(runnable))
        (workdir / "driver.py").write_text(_DRIVER)
        env = dict(os.environ)
        env["PATH"] = (os.path.dirname(sys.executable) + os.pathsep
                       + env.get("PATH", ""))
        env["NSL_DOCS_TEST"] = "1"
        # Temporary files go in the page's directory, removed with it: Beam's
        # DirectRunner leaves an empty directory per pipeline in TMPDIR.
        (workdir / "tmp").mkdir()
        env["TMPDIR"] = str(workdir / "tmp")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.setdefault("MPLBACKEND", "Agg")
        done = subprocess.run(
            [sys.executable, "driver.py", "blocks.json", "results.json"],
            cwd=workdir, env=env, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=PAGE_TIMEOUT_S)
        results_file = workdir / "results.json"
        results = (json.loads(results_file.read_text())
                   if results_file.exists() else [])
        if done.returncode and not any(r["error"] for r in results):
            raise AssertionError(f"{page}: the page's interpreter died "
                                 f"(status {done.returncode}):\n"
                                 f"{done.stdout[-4000:]}")
        return results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _blocks(page):
    return parse_page(page, (REPO / page).read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", PAGES)
def test_page_blocks_run_and_print_what_the_page_says(page):
    blocks = _blocks(page)
    if not any(b.runs for b in blocks):
        pytest.skip(f"{page} has no runnable block")
    results = {r["where"]: r for r in _run_page(page, blocks)}
    previous = None
    for block in blocks:
        if block.runs:
            result = results.get(block.where)
            assert result is not None, f"{block.where} did not run"
            assert result["error"] is None, (
                f"{block.where} failed:\n{result['error']}\n--- output "
                f"(last 3000 characters):\n{result['output'][-3000:]}")
            previous = result
        elif block.output is not None:
            assert previous is not None, (
                f"{block.where}: an `output` block needs a block run before "
                "it")
            problem = match_output(block.code, previous["output"],
                                   **block.output)
            assert problem is None, (
                f"{block.where} (output of {previous['where']}): {problem}\n"
                f"--- printed:\n{previous['output'][-3000:]}")


def _skipped():
    return [b for page in PAGES for b in _blocks(page)
            if b.skip is not None and b.language in RUN_LANGUAGES]


@pytest.mark.parametrize("block", _skipped(), ids=lambda b: b.where)
def test_blocks_marked_not_to_run_here(block):
    pytest.skip(f"{block.where} does not run in the docs test: {block.skip}")


@pytest.mark.parametrize("page", PAGES)
def test_every_fence_names_a_known_language(page):
    for block in _blocks(page):
        assert block.language in set(RUN_LANGUAGES) | TEXT_LANGUAGES, (
            f"{block.where}: fence language {block.language!r}; use one of "
            f"{sorted(set(RUN_LANGUAGES) | TEXT_LANGUAGES)} (python, bash "
            "and sh blocks run in tests/docs_test.py)")
        if block.output is not None:
            assert block.language == "text", (
                f"{block.where}: `output` goes before a ```text block")


def test_parse_page_reads_directives_and_substitutions():
    page = "\n".join([
        "Intro.", "", "<!-- docs-test: skip: needs two hosts -->",
        "```bash", "torchrun x.py", "```",
        "<!-- docs-test: sub epochs=5 => epochs=1 -->",
        "<!-- docs-test: setup", "x = 1", "-->",
        "```python", "fit(epochs=5)", "```", "",
        "<!-- docs-test: output atol=0.5 -->", "```text", "loss 1.0", "```",
        "```python", "print(2)", "```"])
    blocks = parse_page("p.md", page)
    assert [b.line for b in blocks] == [4, 11, 16, 19]
    assert blocks[0].skip == "needs two hosts" and not blocks[0].runs
    assert blocks[1].code == "fit(epochs=1)\n"
    assert blocks[1].setup.strip() == "x = 1" and blocks[1].skip is None
    assert blocks[2].output == {"atol": 0.5, "rtol": 0.0}
    assert blocks[3].skip is None and not blocks[3].subs
    with pytest.raises(ValueError, match="p.md:2: `sub` text 'nope'"):
        parse_page("p.md", "<!-- docs-test: sub nope => x -->\n```python\n"
                   "1\n```")


def test_match_output_needs_lines_in_order_within_tolerance():
    printed = "Epoch 1/1\nloss: 0.31 - accuracy: 0.912\n\nclean 97.1%\n"
    assert match_output("accuracy: 0.91", printed) is not None  # text differs
    assert match_output("loss: 0.3 - accuracy: 0.9", printed,
                        atol=0.01) is not None  # 0.912 is 0.012 away
    assert match_output("loss: 0.3 - accuracy: 0.9", printed,
                        atol=0.0125) is None
    assert match_output("clean 97%", printed, atol=0.5) is None
    assert match_output("clean 97%\nEpoch 1/1", printed, atol=0.5) is not None
    assert match_output("clean 95%", printed, rtol=0.01) is not None
