"""``benchmarks/run_all.py --write-docs``: regions rebuilt from JSON, nothing else touched.

Fast: a small fake JSON, a temporary page; no benchmark runs.
"""

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_all = _load("run_all", ROOT / "benchmarks" / "run_all.py")
docs_tables = _load("docs_tables", ROOT / "tests" / "test_docs_tables.py")


def _run(seed, **extra):
    return dict(random_state=seed, fit_seconds=100.0 + seed, torch_threads=1, epochs=50 + seed,
                max_epochs=200, hit_cap=False, out_r2_mean=0.991, out_r2_min=0.981,
                hid_r2_mean=0.987, hid_r2_min=0.97, **extra)


def _fake_fidelity():
    ari = dict(ari_output=0.88, ari_cka=-0.055)
    return dict(
        targets=dict(ari=0.95, stability=0.1, avg_ratio=1.1),
        populations={
            "cognitive": dict(runs=[_run(s, ari_dynamo=0.6 + s / 10, ari_cluster=1.0, **ari)
                                    for s in range(3)],
                              stability=0.286, stability_behaviour=0.05,
                              run=dict(date="2026-12-01 10:00 UTC", commit="abc1234",
                                       machine="Linux x86_64, 2 CPUs", torch_threads=1)),
            "averaging:delay": dict(runs=[_run(s, avg_ratio=0.8) for s in range(3)],
                                    stability=0.338),
        })


HEAD = """# Page

Hand-written text before, with `python benchmarks/bench_fidelity.py`.

| a | b |
|---|---|
| 1 | 2 |

"""
TAIL = """
Hand-written text after.
"""


def _region(name, body):
    return (run_all.MARKER.format(name=name) + "\n" + body + "\n" + run_all.END + "\n")


@pytest.fixture
def page(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "fidelity.json").write_text(json.dumps(_fake_fidelity()))
    old = "\n".join([
        "| population | | output R² | x | x | x | x | x | x |",
        "|---|---|---|---|---|---|---|---|---|",
        "| averaging: delay | before | 0.1 (0.1) | 0.1 | 80 ×3 (cap) | 60 | — | 9.99 | 0.5 |",
        "| | after | stale | | | | | | |",
    ])
    path = tmp_path / "page.md"
    path.write_text(HEAD + _region("fidelity-clustering", "| stale |\n|---|\n| 0 |")
                    + "\nBetween.\n\n" + _region("fidelity", old) + TAIL)
    return path, results


def test_writer_replaces_only_marked_regions(page):
    path, results = page
    before = path.read_text()
    assert run_all.write_docs([path], results) == [path]
    text = path.read_text()
    outside = run_all.REGION.sub("", text)
    assert outside == run_all.REGION.sub("", before)  # hand-written text untouched
    assert text.startswith(HEAD) and text.endswith(TAIL)
    assert "stale" not in text
    # A second run changes nothing: the output is a fixed point.
    assert run_all.write_docs([path], results) == []


def test_written_tables_parse_and_name_their_command(page):
    path, results = page
    run_all.write_docs([path], results)
    found = docs_tables.tables(path)
    assert len(found) == 3  # the hand-written one and the two generated ones
    for table in found:
        rows = table[1]
        width = len(docs_tables._cells(rows[0]))
        assert docs_tables.SEPARATOR.match(rows[1])
        assert all(len(docs_tables._cells(r)) == width for r in rows)
        assert docs_tables.COMMAND.findall(table[2])
    assert all("benchmarks/run_all.py" in docs_tables.COMMAND.findall(t[2]) for t in found[1:])
    clustering, fidelity = found[1][1], found[2][1]
    assert docs_tables._cells(clustering[2]) == [
        "cognitive", "0.60 / 0.70 / 0.80", "**1.00 / 1.00 / 1.00**", "0.88", "−0.06",
        "0.286 / **0.050**"]
    # The "before" row is carried over; the "after" row comes from the JSON.
    assert fidelity[3] == ("| averaging: delay | before | 0.1 (0.1) | 0.1 | 80 ×3 (cap) | 60 "
                           "| — | 9.99 | 0.5 |")
    after = docs_tables._cells(fidelity[4])
    assert after[:2] == ["", "after"]
    assert after[4] == "50, 51, 52 (converged)" and after[7] == "**0.80, 0.80, 0.80**"
    text = path.read_text()
    assert "machine Linux x86_64, 2 CPUs; torch threads 1; run 2026-12-01 10:00 UTC; " \
           "commit abc1234" in text
    # The averaging population stored no provenance: the stamp says so.
    assert "machine Linux x86_64, 2 CPUs (not recorded for all)" in text


def test_unknown_region_is_an_error(tmp_path):
    with pytest.raises(KeyError, match="unknown generated region"):
        run_all.rewrite(_region("no-such-table", "| x |"), tmp_path)


def test_every_marked_region_in_the_docs_has_a_generator():
    for path in run_all.pages():
        for match in run_all.REGION.finditer(path.read_text()):
            assert match.group("name") in run_all.GENERATORS, (path, match.group("name"))


def test_the_docs_tables_are_the_committed_results():
    """Every generated region of the README and docs is what ``--write-docs --no-run``
    writes from the committed JSON: a benchmark re-run without ``--write-docs``, or a
    table edited by hand, fails here."""
    for path in run_all.pages():
        text = path.read_text()
        assert run_all.rewrite(text) == text, (
            f"{path.relative_to(ROOT)}: a generated table differs from benchmarks/results/; "
            "run `python benchmarks/run_all.py --write-docs --no-run`")
