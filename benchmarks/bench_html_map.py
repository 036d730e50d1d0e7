"""The interactive embedding map in a real browser: size, load, colour switch, hover, zoom.

    python benchmarks/bench_html_map.py                       # 2,000 random points
    python benchmarks/bench_html_map.py --demo                # + the demo population's map
    python benchmarks/bench_html_map.py --demo --screenshot docs/_static/embedding_map_html.png

Needs plotly and playwright (``pip install plotly playwright``) and a Chromium:
playwright's own (``python -m playwright install chromium``) or a system one given with
``--chromium`` (e.g. Debian's ``apt-get install chromium-headless-shell``, the default path
below). WebGL runs in software (SwiftShader) in headless mode, so the timings are an upper
bound for a desktop browser.

For each page it prints the file size, the time to load and draw it, the entries of the
colour dropdown, the points shown before and after picking one (every model, once), the
hover label of one point, the time a zoom takes to redraw, and any JavaScript error. The
demo page fits ``DynamoEmbedder`` at its defaults on the default population
(``make_rnn_population``, read from the cache; about 5 minutes on one CPU thread).
"""

import argparse
import os
import tempfile
import time

import numpy as np

CHROMIUM = "/usr/bin/chromium-headless-shell"

_STATE = """() => { const g = document.querySelector('.js-plotly-plot');
    const shown = g._fullData.filter(d => d.visible === true);
    return {traces: g._fullData.length,
            shown_points: shown.reduce((s, d) => s + d.x.length, 0),
            shown_models: new Set(shown.flatMap(d => Array.from(d.customdata, r => r[0]))).size,
            legend_title: (g.layout.legend.title || {}).text,
            legend: [...g.querySelectorAll('.legendtext')].map(e => e.textContent)}; }"""

_NEAREST = """([x, y]) => { const g = document.querySelector('.js-plotly-plot');
    const xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis;
    let best = null, bd = Infinity;
    for (const d of g._fullData.filter(t => t.visible === true))
        for (let j = 0; j < d.x.length; j++) {
            const r = Math.hypot(d.x[j] - x, d.y[j] - y);
            if (r < bd) { bd = r; best = [d.x[j], d.y[j]]; } }
    const bb = g.querySelector('.nsewdrag').getBoundingClientRect();
    return {x: bb.left + xa.l2p(best[0]), y: bb.top + ya.l2p(best[1])}; }"""

_ZOOM = """async () => { const g = document.querySelector('.js-plotly-plot');
    const t = performance.now();
    for (let k = 0; k < 5; k++)
        await Plotly.relayout(g, {'xaxis.range': [-1 - k / 10, 1 + k / 10]});
    const dt = (performance.now() - t) / 5;
    await Plotly.relayout(g, {'xaxis.autorange': true});
    return dt; }"""


def random_page(path, n=2000):
    from skdynamo.plotting import plot_embedding_html
    rng = np.random.default_rng(0)

    class Scores:
        emulation_scores_ = {"output_r2": rng.uniform(0.95, 1, n),
                             "hidden_r2": rng.uniform(0.8, 1, n)}

    data = {"task": rng.choice(["flipflop", "integration", "delay"], n),
            "cell": rng.choice(["rnn", "gru", "lstm"], n), "seed": rng.integers(0, 5, n),
            "score": rng.uniform(0.9, 1, n)}
    t = time.perf_counter()
    plot_embedding_html(rng.normal(size=(n, 2)), path, data=data, embedder=Scores(),
                        color_by="task")
    print(f"{n} random points: written in {time.perf_counter() - t:.2f} s")
    return (0.0, 0.0)


def demo_page(path):
    import torch

    from skdynamo import DynamoEmbedder
    from skdynamo.datasets import make_rnn_population
    from skdynamo.plotting import plot_embedding_html
    torch.set_num_threads(1)
    pop = make_rnn_population()
    t = time.perf_counter()
    emb = DynamoEmbedder(probe_inputs=pop.probe_inputs, n_components=2, random_state=0)
    z = emb.fit_transform(pop.models)
    print(f"demo population: {len(z)} networks fitted in {time.perf_counter() - t:.0f} s, "
          f"mean output R^2 {emb.emulation_scores_.output_r2.mean():.3f}")
    plot_embedding_html(z, path, data=pop, embedder=emb, color_by="task",
                        title=f"DYNAMO embedding of {len(pop.models)} networks")
    delay = z[pop.task == "delay"].mean(0)        # hover a point with room for its label
    return tuple(float(v) for v in delay)


def browse(path, chromium, hover_near, switch_to, screenshot=None):
    from playwright.sync_api import sync_playwright
    print(f"  file: {os.path.getsize(path) / 1e6:.2f} MB")
    with sync_playwright() as p:
        kw = dict(executable_path=chromium) if chromium else {}
        browser = p.chromium.launch(args=["--no-sandbox", "--enable-unsafe-swiftshader",
                                          "--use-angle=swiftshader"], **kw)
        page = browser.new_page(viewport={"width": 1000, "height": 660})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        t = time.perf_counter()
        page.goto("file://" + os.path.abspath(path))
        page.wait_for_function("document.querySelector('.js-plotly-plot') && "
                               "document.querySelector('.js-plotly-plot')._fullLayout")
        print(f"  loaded and drawn in {time.perf_counter() - t:.2f} s "
              f"({len(page.query_selector_all('canvas'))} WebGL canvases)")
        print(f"  shown first: {page.evaluate(_STATE)}")
        page.click(".updatemenu-header-group")
        page.wait_for_timeout(300)
        items = page.query_selector_all(".updatemenu-dropdown-button")
        print(f"  dropdown: {[i.text_content() for i in items]}")
        next(i for i in items if i.text_content() == switch_to).click()
        page.wait_for_timeout(500)
        print(f"  after picking {switch_to!r}: {page.evaluate(_STATE)}")
        print(f"  zoom redraw: {page.evaluate(_ZOOM):.0f} ms")
        at = page.evaluate(_NEAREST, list(hover_near))
        page.mouse.move(at["x"], at["y"])
        page.wait_for_timeout(400)
        label = page.evaluate("() => [...document.querySelectorAll('.hoverlayer .hovertext')]"
                              ".map(e => [...e.querySelectorAll('tspan.line')]"
                              ".map(l => l.textContent).join(' | '))")
        print(f"  hover: {label}")
        if screenshot:
            page.screenshot(path=screenshot)
            print(f"  screenshot: {screenshot}")
        print(f"  JavaScript errors: {errors or 'none'}")
        browser.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="random points")
    parser.add_argument("--demo", action="store_true", help="also the demo population's map")
    parser.add_argument("--chromium", default=CHROMIUM if os.path.exists(CHROMIUM) else None,
                        help="Chromium executable (default: playwright's own)")
    parser.add_argument("--screenshot", default=None,
                        help="PNG of the demo map (of the random one without --demo)")
    parser.add_argument("--out", default=tempfile.gettempdir(), help="folder for the pages")
    args = parser.parse_args()
    path = os.path.join(args.out, "skdynamo_random_map.html")
    near = random_page(path, args.n)
    browse(path, args.chromium, near, "output R²", None if args.demo else args.screenshot)
    if args.demo:
        path = os.path.join(args.out, "skdynamo_demo_map.html")
        near = demo_page(path)
        browse(path, args.chromium, near, "task", args.screenshot)


if __name__ == "__main__":
    main()
