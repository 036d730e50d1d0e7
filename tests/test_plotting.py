"""The embedding maps: the interactive HTML page (plotly) and the matplotlib figure that
shares its label and colour rules."""

import functools
import json
import re
import sys

import numpy as np
import pytest
import torch
from sklearn.utils import Bunch

from skdynamo.plotting import plot_embedding, plot_embedding_html

TASKS = np.array(["flipflop", "integration", "delay"])


def _labels(n, rng):
    return {"task": TASKS[rng.integers(0, 3, n)], "seed": rng.integers(0, 3, n),
            "score": rng.uniform(0.9, 1.0, n)}


class _Scored:
    """Stands in for a fitted DynamoEmbedder: only ``emulation_scores_`` is read."""

    def __init__(self, n, rng):
        self.emulation_scores_ = Bunch(output_r2=rng.uniform(0.95, 1.0, n),
                                       hidden_r2=rng.uniform(0.8, 1.0, n))


def _figure_in(html):
    """The traces and layout that the page hands to ``Plotly.newPlot``, read back from it."""
    decoder = json.JSONDecoder()

    def value_after_comma(pos):
        pos = html.index(",", pos) + 1
        while html[pos].isspace():
            pos += 1
        return decoder.raw_decode(html, pos)

    data, end = value_after_comma(html.index("Plotly.newPlot("))   # after the div id
    layout, _ = value_after_comma(end)
    return data, layout


def _shown(traces, mask=None):
    """Rows of customdata of the traces shown (by ``mask``, or by their visibility)."""
    rows = []
    for k, t in enumerate(traces):
        on = mask[k] if mask is not None else t.get("visible", True) is True
        if on:
            rows.extend(t["customdata"])
    return rows


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    pytest.importorskip("plotly")
    rng = np.random.default_rng(0)
    n = 40
    z, data, emb = rng.normal(size=(n, 3)), _labels(n, rng), _Scored(n, rng)
    path = tmp_path_factory.mktemp("html") / "map.html"
    fig = plot_embedding_html(z, path, data=data, embedder=emb, color_by="task")
    return Bunch(z=z, data=data, emb=emb, fig=fig, path=path,
                 html=path.read_text(encoding="utf-8"))


def test_html_is_one_self_contained_file(page):
    from plotly.offline import get_plotlyjs
    html = page.html
    assert "<html>" in html[:100] and html.rstrip().endswith("</html>")
    assert get_plotlyjs()[-2000:] in html                   # the bundle itself, inline
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, flags=re.I)   # nothing fetched
    assert not re.search(r"<link[^>]*\bhref\s*=\s*[\"']?https?:", html, flags=re.I)
    assert "mathjax" not in html.lower().split("plotly.newplot(")[-1]


def test_every_model_hovers_with_its_index_labels_and_r2(page):
    traces, layout = _figure_in(page.html)
    assert {t["type"] for t in traces} == {"scattergl"}     # WebGL
    template = traces[0]["hovertemplate"]
    assert template.startswith("model %{customdata[0]}")
    names = re.findall(r"<br>([^:]+): %\{customdata\[(\d+)\]\}", template)
    cols = {name: int(j) for name, j in names}
    assert list(cols) == ["task", "seed", "score", "output R²", "hidden R²"]
    rows = {int(r[0]): r for r in _shown(traces)}
    assert sorted(rows) == list(range(len(page.z)))          # every model once
    r2 = page.emb.emulation_scores_
    for i, row in rows.items():
        assert row[cols["task"]] == page.data["task"][i]
        assert row[cols["seed"]] == str(page.data["seed"][i])
        assert float(row[cols["output R²"]]) == pytest.approx(r2.output_r2[i], abs=1e-4)
        assert float(row[cols["hidden R²"]]) == pytest.approx(r2.hidden_r2[i], abs=1e-4)
    # the points are where the embeddings put them (dims 0 and 1)
    fig_rows = [(int(r[0]), x, y) for t in page.fig.data if t.visible is True
                for r, x, y in zip(t.customdata, t.x, t.y)]
    for i, x, y in fig_rows:
        assert (x, y) == (page.z[i, 0], page.z[i, 1])


def test_colour_dropdown_switches_between_every_column(page):
    traces, layout = _figure_in(page.html)
    buttons = layout["updatemenus"][0]["buttons"]
    assert [b["label"] for b in buttons] == ["task", "seed", "score", "output R²", "hidden R²"]
    assert buttons[layout["updatemenus"][0]["active"]]["label"] == "task"
    assert layout["legend"]["title"]["text"] == "task"
    n = len(page.z)
    for b in buttons:
        col = b["label"]
        mask = b["args"][0]["visible"]
        assert b["args"][1] == {"legend.title.text": col}
        rows = _shown(traces, mask)
        assert sorted(int(r[0]) for r in rows) == list(range(n))   # each model once
        shown = [t for t, on in zip(traces, mask) if on]
        if col in ("task", "seed"):                # categories: a legend entry each
            values = np.asarray(page.data[col]).astype(str)
            assert sorted(t["name"] for t in shown) == sorted(set(values))
            for t in shown:
                assert all(values[int(r[0])] == t["name"] for r in t["customdata"])
            assert len({t["marker"]["color"] for t in shown}) == len(shown)
        else:                                      # many numbers: one trace, a colour bar
            assert len(shown) == 1 and shown[0]["marker"]["showscale"] is True
            assert shown[0]["marker"]["colorbar"]["title"]["text"] == col
    # the first column shown is the one asked for, the others hidden
    assert _shown(traces) == _shown(traces, buttons[0]["args"][0]["visible"])


def test_color_by_parameter_and_options(tmp_path):
    pytest.importorskip("plotly")
    rng = np.random.default_rng(1)
    z, data = rng.normal(size=(30, 2)), _labels(30, rng)
    fig = plot_embedding_html(z, data=data, color_by="score", color_options=["task"])
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == ["score", "task"]
    shown = [t for t in fig.data if t.visible is True]
    assert len(shown) == 1 and list(shown[0].marker.color) == pytest.approx(data["score"])
    # an array as the colour: its own column, in the hover too
    fig = plot_embedding_html(z, data=data, color_by=np.arange(30) % 2 == 0)
    menu = fig.layout.updatemenus[0]
    assert [b.label for b in menu.buttons] == ["task", "seed", "score", "color_by"]
    assert menu.active == 3 and fig.layout.legend.title.text == "color_by"
    assert "color_by: %{customdata[4]}" in fig.data[0].hovertemplate
    # missing values are a category of their own: no model is dropped
    fig = plot_embedding_html(z, data={"w": np.where(np.arange(30) < 10, np.nan, 2.0)})
    assert sorted(t.name for t in fig.data) == ["2", "nan"]
    assert sum(len(t.x) for t in fig.data) == 30
    # no labels at all: one trace of models, no dropdown
    fig = plot_embedding_html(z)
    assert len(fig.data) == 1 and not fig.layout.updatemenus
    assert fig.data[0].hovertemplate == "model %{customdata[0]}<extra></extra>"


def test_population_bunch_and_dataframe_become_columns(tiny_models):
    pytest.importorskip("plotly")
    pd = pytest.importorskip("pandas")
    n = 6
    pop = Bunch(models=[tiny_models[i % 3] for i in range(n)],       # skipped
                task=np.array(["flipflop", "delay"] * 3), cell=np.array(["rnn", "gru"] * 3),
                seed=np.arange(n), learned=np.ones(n, dtype=bool),
                probe_inputs=np.zeros((n, 5, 3)),                      # 3-D: skipped
                DESCR="six networks", task_name="flipflop")            # strings: skipped
    z = np.random.default_rng(0).normal(size=(n, 2))
    fig = plot_embedding_html(z, data=pop, color_by="cell")
    names = re.findall(r"<br>([^:]+):", fig.data[0].hovertemplate)
    assert names == ["task", "cell", "seed", "learned"]
    # constant columns stay in the hover but are not offered as colours
    menu = fig.layout.updatemenus[0]
    assert [b.label for b in menu.buttons] == ["task", "cell", "seed"]
    assert menu.active == 1
    frame = pd.DataFrame({"task": pop.task, "width": [8, 16] * 3})
    fig = plot_embedding_html(z, data=frame)
    assert re.findall(r"<br>([^:]+):", fig.data[0].hovertemplate) == ["task", "width"]
    assert fig.layout.legend.title.text == "task"


def test_scores_of_a_fitted_embedder(tiny_fitted, tiny_models, tmp_path):
    pytest.importorskip("plotly")
    fig = plot_embedding_html(None, tmp_path / "m.html", embedder=tiny_fitted,
                              data={"cell": ["rnn", "gru", "lstm"]})
    rows = sorted((r for t in fig.data if t.visible is True for r in t.customdata),
                  key=lambda r: int(r[0]))
    scores = tiny_fitted.emulation_scores_
    assert [float(r[2]) for r in rows] == pytest.approx(scores.output_r2, abs=1e-3)
    assert [float(r[3]) for r in rows] == pytest.approx(scores.hidden_r2, abs=1e-3)
    assert list(fig.data[0].x) + list(fig.data[1].x) + list(fig.data[2].x) == \
        pytest.approx(tiny_fitted.embeddings_[:, 0])
    assert (tmp_path / "m.html").stat().st_size > 1e6


def test_2000_points_stay_small_and_few_traces(tmp_path):
    pytest.importorskip("plotly")
    from plotly.offline import get_plotlyjs
    rng = np.random.default_rng(0)
    n = 2000
    path = tmp_path / "big.html"
    fig = plot_embedding_html(rng.normal(size=(n, 2)), path, data=_labels(n, rng),
                              embedder=_Scored(n, rng))
    assert len(fig.data) == 3 + 3 + 1 + 1 + 1     # task, seed: categories; 3 colour bars
    data_bytes = path.stat().st_size - len(get_plotlyjs())
    assert data_bytes < 1.5e6, data_bytes          # ~0.9 MB of data beside the bundle


@pytest.mark.parametrize("kw, match", [
    (dict(data={"task": ["a", "b", "c"]}), r"data\['task'\] has 3 entries for 6 models"),
    (dict(data=["a", "b"]), r"data has 2 entries for 6 models"),
    (dict(data={"task": list("abcabc")}, color_by="cell"),
     r"color_by='cell' is not a column; the columns are 'task'"),
    (dict(color_by="task"), r"color_by='task' is not a column; the columns are none"),
    (dict(color_by=[1, 2]), r"color_by has 2 entries for 6 models"),
    (dict(data={"task": list("abcabc")}, color_options=["nope"]), r"color_options='nope'"),
    (dict(dims=(0, 5)), r"dims must be two embedding dimensions in \[0, 2\]"),
])
def test_bad_labels_name_the_argument(kw, match):
    pytest.importorskip("plotly")
    z = np.zeros((6, 3))
    with pytest.raises(ValueError, match=match):
        plot_embedding_html(z, **kw)


def test_bad_embedder_and_frames_name_the_argument(tiny_fitted):
    pytest.importorskip("plotly")
    pd = pytest.importorskip("pandas")
    from skdynamo import DynamoEmbedder
    with pytest.raises(ValueError, match=r"embedder: emulation_scores_ has 3 models but the "
                                         r"embeddings have 5 rows"):
        plot_embedding_html(np.zeros((5, 2)), embedder=tiny_fitted)
    with pytest.raises(ValueError, match=r"embedder=DynamoEmbedder has no embeddings_"):
        plot_embedding_html(embedder=DynamoEmbedder())
    with pytest.raises(ValueError, match=r"embedder=DynamoEmbedder has no emulation_scores_"):
        plot_embedding_html(np.zeros((3, 2)), embedder=DynamoEmbedder())
    with pytest.raises(ValueError, match="Pass embeddings"):
        plot_embedding_html()
    frame = pd.DataFrame({"task": list("abc"), "obj": [object()] * 3})
    with pytest.raises(TypeError, match=r"data\['obj'\] is not a column"):
        plot_embedding_html(np.zeros((3, 2)), data=frame)
    with pytest.raises(TypeError, match=r"data must be a pandas DataFrame, a Bunch or dict"):
        plot_embedding_html(np.zeros((3, 2)), data=42)


def test_missing_plotly_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    with pytest.raises(ImportError, match=r"pip install 'skdynamo\[interactive\]'"):
        plot_embedding_html(np.zeros((3, 2)))


def test_cli_demo_writes_the_html(population, monkeypatch, tmp_path, capsys):
    pytest.importorskip("plotly")
    pytest.importorskip("matplotlib")
    import skdynamo
    import skdynamo.datasets
    from skdynamo.__main__ import main
    monkeypatch.setattr(skdynamo.datasets, "make_rnn_population",
                        lambda **kw: population)
    monkeypatch.setattr(skdynamo, "DynamoEmbedder", functools.partial(
        skdynamo.DynamoEmbedder, max_epochs=5, hidden_size=16, transform_max_iter=3))
    html = tmp_path / "map.html"
    assert main(["demo", "--output", str(tmp_path / "map.png"), "--html", str(html)]) == 0
    assert f"Interactive map written to {html}" in capsys.readouterr().out
    traces, layout = _figure_in(html.read_text(encoding="utf-8"))
    assert sorted(int(r[0]) for r in _shown(traces)) == list(range(len(population.models)))
    assert "output R²" in traces[0]["hovertemplate"]
    assert layout["legend"]["title"]["text"] == "task"
    assert "cell" in [b["label"] for b in layout["updatemenus"][0]["buttons"]]


def test_cli_html_without_plotly_fails_before_training(monkeypatch, tmp_path, capsys):
    from skdynamo.__main__ import main
    monkeypatch.setitem(sys.modules, "plotly", None)
    assert main(["demo", "--html", str(tmp_path / "m.html"),
                 "--data-home", str(tmp_path / "never")]) == 1
    assert "--html needs plotly: pip install 'skdynamo[interactive]'" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


# -- the matplotlib map shares the label and colour rules -----------------------------------

def test_plot_embedding_names_columns_and_shares_colours():
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rng = np.random.default_rng(0)
    z, data = rng.normal(size=(30, 2)), _labels(30, rng)
    ax = plot_embedding(z, color_by="task", marker_by="seed", labels="seed", data=data)
    first = list(dict.fromkeys(data["task"]))[0]
    handles, names = ax.get_legend_handles_labels()
    h = handles[[k for k, name in enumerate(names) if name.startswith(f"{first} /")][0]]
    assert matplotlib.colors.to_hex(h.get_facecolor()[0]) == "#1f77b4"   # tab10, as in HTML
    assert len(ax.texts) == 30
    plt.close(ax.figure)
    ax = plot_embedding(z, color_by="score", data=data)            # continuous: a colour bar
    assert len(ax.figure.axes) == 2 and ax.get_legend() is None
    plt.close(ax.figure)
    # continuous colour with markers: the legend names the markers in a neutral grey
    ax = plot_embedding(z, color_by="score", marker_by="task", data=data)
    legend = ax.get_legend()
    assert {t.get_text() for t in legend.get_texts()} == set(data["task"])
    assert {matplotlib.colors.to_hex(h.get_facecolor()[0])
            for h in legend.legend_handles} == {matplotlib.colors.to_hex("0.7")}
    assert all(h.get_array() is None for h in legend.legend_handles)  # drawn grey, too
    plt.close(ax.figure)
    with pytest.raises(ValueError, match=r"color_by='cell' is not a column"):
        plot_embedding(z, color_by="cell", data=data)
    with pytest.raises(ValueError, match=r"marker_by has 3 entries for 30 models"):
        plot_embedding(z, marker_by=[1, 2, 3])
    with pytest.raises(ValueError, match=r"data\['task'\] has 2 entries for 30 models"):
        plot_embedding(z, data={"task": ["a", "b"]})
    plt.close("all")


def test_models_are_not_columns(tiny_models):
    """A list of networks (a Bunch's ``models``) is skipped, never iterated into."""
    from skdynamo.plotting._embedding import _label_columns
    seq = torch.nn.Sequential(torch.nn.Linear(2, 2))
    cols = _label_columns({"models": [seq, seq], "net": tiny_models[:2], "k": [1, 2]}, 2)
    assert list(cols) == ["k"]


def test_passing_the_estimator_instead_of_its_points_names_the_fix(tiny_fitted):
    pytest.importorskip("matplotlib")
    from skdynamo.plotting import plot_embedding
    with pytest.raises(TypeError, match=r"not a DynamoEmbedder: pass emb.embeddings_"):
        plot_embedding(tiny_fitted)
