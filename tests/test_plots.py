"""The figures: one style per method name (every front end's names covered, the same colour and
label in every figure), legends off the data, axis labels in words, the re-weighted variant on a
panel of its own and the two D^2/n bound lines told apart."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from tiny import DEEP_TINY, tiny_two_layer_preset

import greedyprune.prune as gprune
from greedyprune import plots
from greedyprune.sims import DEEP_METHODS, LAYERWISE_METHODS, TWO_LAYER_METHODS, Setting
from greedyprune.sims import deep as dx
from greedyprune.sims.two_layer import verify_two_layer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = Setting(name="interior", m=8, d=3, width=40, steps=60, teacher_width=20, m_test=30)


@pytest.fixture(scope="module")
def two_layer(tmp_path_factory):
    preset = tiny_two_layer_preset(TINY)
    results, _ = verify_two_layer(preset, tmp_path_factory.mktemp("tl"), progress=False, n_boot=10)
    return results


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    return dx.run_deep(DEEP_TINY, (0, 1), tmp_path_factory.mktemp("deep"), n_boot=20)[0]


@pytest.fixture(autouse=True)
def _close_figures():
    plots.apply_style()
    yield
    plt.close("all")


def _colours_by_label(fig) -> dict[str, set[str]]:
    """Legend label -> the colours drawn under it, over every axes and the figure legends."""
    out: dict[str, set[str]] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if not line.get_label().startswith("_"):
                out.setdefault(line.get_label(), set()).add(to_hex(line.get_color()))
        for container in ax.containers:  # errorbar series
            label = container.get_label()
            if label and not label.startswith("_") and container.lines[0] is not None:
                out.setdefault(label, set()).add(to_hex(container.lines[0].get_color()))
    return out


def _method_colours(fig) -> dict[str, set[str]]:
    """Method -> colours of the series labelled with its style's label (the label may carry a
    suffix such as a fitted slope)."""
    by_label = _colours_by_label(fig)
    styles = sorted(plots.METHOD_STYLES.items(), key=lambda kv: -len(kv[1].label))
    out: dict[str, set[str]] = {}
    for label, colours in by_label.items():
        for method, style in styles:
            if label == style.label or label.startswith(style.label + ":"):
                out.setdefault(method, set()).update(colours)
                break
    return out


def test_every_method_name_of_every_front_end_has_a_style(two_layer, deep):
    names = {
        *TWO_LAYER_METHODS,
        *DEEP_METHODS,
        *dx.RECORD_METHODS,
        *LAYERWISE_METHODS,
        *gprune.METHODS,
        *gprune.BASELINES,
    }
    # ... and the lists are the names the records really carry
    assert set(two_layer["method"]) <= set(TWO_LAYER_METHODS)
    assert set(deep["method"]) <= set(dx.RECORD_METHODS)
    missing = sorted(names - set(plots.METHOD_STYLES))
    assert not missing, f"no style in greedyprune.plots.METHOD_STYLES for {missing}"
    for name in names:
        style = plots.method_style(name)
        assert style.label and to_hex(style.color)


def test_methods_of_one_front_end_are_told_apart():
    # the bounds experiment's "greedy" is greedy_pretrained under another name, drawn on its own
    two_layer = [m for m in TWO_LAYER_METHODS if m != "greedy"]
    for names in (two_layer, dx.RECORD_METHODS, gprune.METHODS):
        styles = [plots.method_style(m) for m in names]
        assert len({(s.color, s.marker, s.ls) for s in styles}) == len(styles), names
        assert len({s.label for s in styles}) == len(styles), names


def test_one_method_has_one_colour_in_every_figure(two_layer, deep):
    figures = {
        "rate": plots.plot_rate(two_layer, (2, 16)),
        "finetune": plots.plot_finetune(two_layer),
        "deep_rate": plots.plot_deep_rate(deep, n_boot=20),
        # the teacher's data have no classes: any accuracy column serves for the colours
        "deep_accuracy": plots.plot_deep_accuracy(
            [("teacher", deep.assign(acc_test=1 / (1 + deep["loss_test"])))]
        ),
    }
    seen: dict[str, dict[str, set[str]]] = {}
    for name, fig in figures.items():
        for method, colours in _method_colours(fig).items():
            seen.setdefault(method, {})[name] = colours
    # the methods drawn in two or more of these figures
    for method in ("greedy_pretrained", "gd_scratch", "greedy_finetuned", "gd_retrain"):
        assert len(seen.get(method, {})) >= 2, (method, seen.get(method))
    for method, per_figure in seen.items():
        want = {to_hex(plots.METHOD_STYLES[method].color)}
        for name, colours in per_figure.items():
            assert colours == want, (method, name, colours, want)


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_rate_figure_reads(two_layer):
    fig = plots.plot_rate(two_layer, (2, 16))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    data_axes = [ax for ax in fig.axes if ax.get_lines()]
    for ax in data_axes:
        # legend off the data, axis labels in words
        legend = ax.get_legend()
        assert legend is not None
        assert not _overlaps(legend.get_window_extent(renderer), ax.get_window_extent(renderer))
        assert ax.get_ylabel() in ("training loss", "test loss")
        assert ax.get_ylabel() not in two_layer.columns
    assert "greedy_corrective" in _method_colours(fig)
    by_axes = [{line.get_label() for line in ax.get_lines()} for ax in data_axes]
    corr = plots.method_style("greedy_corrective").label
    gd = plots.method_style("gd_scratch").label
    # the re-weighted variant has its own panel, without GD from scratch
    assert any(corr in labs for labs in by_axes)
    assert not any(corr in labs and gd in labs for labs in by_axes)
    # the fits and the fit range are in the legend
    texts = [t.get_text() for ax in data_axes for t in ax.get_legend().get_texts()]
    assert any(t.startswith("fit, slope") for t in texts)
    assert any(t.startswith("fit range") for t in texts)


def test_bound_lines_are_told_apart_or_merged(two_layer):
    fig = plots.plot_bounds(two_layer)
    for ax in fig.axes[: len(fig.axes) // 2]:
        bound = [line for line in ax.get_lines() if "D²/n" in line.get_label()]
        if len(bound) == 1:  # one line for both targets, saying so
            assert "both targets" in bound[0].get_label()
        else:
            assert len(bound) == 2
            a, b = bound
            assert (a.get_linestyle(), to_hex(a.get_color())) != (
                b.get_linestyle(),
                to_hex(b.get_color()),
            )
            assert a.get_label() != b.get_label()


def test_every_two_layer_figure_is_written(two_layer, tmp_path):
    written = plots.two_layer_figures(two_layer, tmp_path)
    assert {p.name for p in written} >= {"fig_rate.png", "fig_bounds.png", "fig_finetune.png"}


def test_prune_figure_uses_the_style_map():
    rows = []
    for method in gprune.METHODS:
        for target in (0.5, 0.25):
            rows.append(
                dict(
                    arch="resnet18",
                    method=method,
                    target=target,
                    macs_fraction_mean=target,
                    acc_finetuned_mean=0.8,
                    acc_finetuned_std=0.01,
                )
            )
    fig = plots.plot_prune_compare(pd.DataFrame(rows), {"resnet18": 0.9})
    colours = _method_colours(fig)
    for method in gprune.METHODS:
        assert colours[method] == {to_hex(plots.METHOD_STYLES[method].color)}, method


def test_axis_labels_are_words():
    for column in ("loss_train", "loss_test", "acc_test", "discrepancy", "n"):
        label = plots.axis_label(column)
        assert "_" not in label and label != column
    assert plots.axis_label("some_new_column") == "some new column"


def test_importing_the_plots_chooses_no_backend():
    """A notebook's or a user's backend stands: importing greedyprune.plots does not switch it."""
    import subprocess
    import sys

    code = "import matplotlib; matplotlib.use('pdf'); import greedyprune.plots; "
    code += "print(matplotlib.get_backend())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "pdf"


def test_the_study_figures_draw_from_their_tables():
    """The knee sweep's and the budget study's figures are drawn by the plots package from the
    finished fixture folders (the figure scripts only run the study and save)."""
    from pathlib import Path

    from greedyprune.sims.two_layer import budget as bx
    from greedyprune.sims.two_layer import sweep as sx

    fixtures = Path(__file__).parent / "fixtures" / "run-folders"
    knee = pd.read_csv(fixtures / "two-layer-knee" / "results.csv")
    fig = plots.plot_knee(knee, sx.knee_table(knee), factor=sx.KNEE_FACTOR, slope=sx.KNEE_SLOPE)
    assert len(fig.axes) == 3
    budget = pd.read_csv(fixtures / "two-layer-budget" / "results.csv")
    table = bx.steps_table(budget)
    fits = bx.compare_fits(table, n_boot=20)
    fig = plots.plot_budget(budget, table, fits, n=bx.N_SUB, target=bx.TARGET_REL)
    assert len(fig.axes) == 2
    plt.close("all")


def test_every_name_the_figures_and_notebooks_import_from_plots_is_there():
    """The figure scripts and notebooks are not imported by the tests (most run a study when
    they are); their imports from the plots package are read from their source instead."""
    import ast
    from pathlib import Path

    root = Path(__file__).parents[1]
    missing = []
    for path in [*root.glob("figures/*.py"), *root.glob("notebooks/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "greedyprune.plots":
                missing += [(path.name, a.name) for a in node.names if not hasattr(plots, a.name)]
    assert missing == []
