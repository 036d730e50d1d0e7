"""The measured-figure tables of the README and the docs parse, and name their command.

Every Markdown table with a number (outside code) in its body is a table of measured
figures: it must be well formed (a header, a separator, rows with as many cells as the
header) and the text of its section (from the heading above it to the end of the table,
plus the two lines after it) must name the ``python benchmarks/<script>.py`` command
that produced it, a script that exists. A table of numbers that are not measurements
(a reference table) opts out with an HTML comment ``<!-- not measured -->`` on the line
above it.

This runs no benchmark; the figures themselves are checked by rerunning the command.
"""

import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"python (benchmarks/[\w/]+\.py)")
SEPARATOR = re.compile(r"^\|(\s*:?-{3,}:?\s*\|)+\s*$")
OPT_OUT = "<!-- not measured -->"


def _load_run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Cells of a table row, split on pipes outside backticks: the same rule the table writer
# (benchmarks/run_all.py) uses.
_cells = _load_run_all()._cells


def tables(path):
    """``(first line number, lines, section text, opted out)`` of each table of a page."""
    lines = path.read_text().splitlines()
    found, i, heading, fence = [], 0, 0, False
    while i < len(lines):
        if lines[i].startswith("```"):
            fence = not fence
        if not fence and lines[i].startswith("#"):
            heading = i
        if not fence and lines[i].startswith("|"):
            start = i
            while i < len(lines) and lines[i].startswith("|"):
                i += 1
            section = "\n".join(lines[heading:min(i + 2, len(lines))])
            opted_out = start > 0 and lines[start - 1].strip() == OPT_OUT
            found.append((start + 1, lines[start:i], section, opted_out))
            continue
        i += 1
    return found


def _measured(rows):
    # Numbers inside code (`(n, C, H, W)`, `--threads 1`) are not measurements.
    return any(re.search(r"\d", re.sub(r"`[^`]*`", "", "".join(_cells(r)))) for r in rows[2:])


CASES = [(path, t) for path in PAGES for t in tables(path)]


def test_pages_have_measured_tables():
    # The check below must not pass vacuously (say, after a change of the table syntax).
    assert sum(_measured(t[1]) and not t[3] for _, t in CASES) >= 10


@pytest.mark.parametrize("path, table", CASES,
                         ids=[f"{p.relative_to(ROOT)}:{t[0]}" for p, t in CASES])
def test_table_parses_and_names_its_command(path, table):
    line, rows, section, opted_out = table
    where = f"{path.relative_to(ROOT)}:{line}"
    assert len(rows) >= 3, f"{where}: a table needs a header, a separator and a row"
    assert SEPARATOR.match(rows[1]), f"{where}: second line is not a separator: {rows[1]!r}"
    width = len(_cells(rows[0]))
    for k, row in enumerate(rows):
        assert len(_cells(row)) == width, (
            f"{where}: row {k + 1} has {len(_cells(row))} cells, the header {width}")
    if opted_out or not _measured(rows):
        return
    commands = COMMAND.findall(section)
    assert commands, (f"{where}: a table of measured figures, but its section names no "
                      "`python benchmarks/...` command that produced it")
    for script in commands:
        assert (ROOT / script).is_file(), f"{where}: {script} does not exist"
