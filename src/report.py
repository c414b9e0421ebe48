"""One page for a whole experiment: `figures/report.html`, interactive, readable from disk.

src/stats.py computes what an experiment learned (as DataFrames); this module only lays it
out: parallel coordinates of every trial, learning curves, the best so far, importance, the
cost view, a grid's heatmap, a sortable table of the top trials, the starting configuration
beside the best, the final model's test figures, and the settings and command behind it all.

The interactive plots are Plotly's (plotly.js, offline): the one library of the field that
draws parallel coordinates with brushing, heatmaps and line plots from the same JSON. Its
script is written once beside the page (`plotly.min.js`), so the page needs no network.
"""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from src.results import Evaluation

SCRIPT = "plotly.min.js"

# One colour per trial status, the same in every figure (PNG and report.html).
STATUS_COLOURS = {
    "completed": "#1f77b4",
    "stopped_early": "#ff7f0e",
    "diverged": "#9467bd",
    "error": "#d62728",
}


@dataclass
class ReportData:
    """Everything the page shows, computed by src/stats.py (gathered by src/analysis.py)."""

    name: str
    kind: str  # search or grid
    metric: str
    epoch: int  # the epoch every trial reached: where trials are compared
    trials: pd.DataFrame  # trial_id, the varied hyperparameters, status, epochs, metric
    varied: list[str]
    log_scale: set[str]
    history: pd.DataFrame  # trial_id, epoch, metric, status
    best_so_far: pd.DataFrame  # minutes, value, best
    cost: pd.DataFrame  # trial_id, seconds_per_epoch, metric, status, pareto
    top: pd.DataFrame
    settings: dict[str, Any]
    command: str | None = None
    importance: pd.DataFrame | None = None
    heatmap: tuple[pd.DataFrame, str, str, str] | None = None  # cells, x, y, note
    versus: tuple[pd.DataFrame, str] | None = None  # start beside best, and what it means
    evaluation: dict[str, Any] | None = None  # refit/evaluation/summary.json
    notes: list[str] = field(default_factory=list)


def axis(values: pd.Series, name: str, log: bool) -> dict[str, Any]:
    """A parallel-coordinates dimension: log10 with real-valued ticks for a log-uniform
    hyperparameter, labelled positions for a categorical one, plain numbers otherwise."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if not numeric or values.nunique() <= 4:
        levels = sorted(values.unique(), key=None if numeric else str)
        codes = values.map({level: i for i, level in enumerate(levels)})
        return {
            "label": name,
            "values": codes.tolist(),
            "tickvals": list(range(len(levels))),
            "ticktext": [str(level) for level in levels],
        }
    if log:
        ticks = np.linspace(np.log10(values.min()), np.log10(values.max()), 4)
        return {
            "label": f"{name} (log)",
            "values": np.log10(values).tolist(),
            "tickvals": ticks.tolist(),
            "ticktext": [f"{10**t:.1e}" for t in ticks],
        }
    return {"label": name, "values": values.tolist()}


def parallel_coordinates(data: ReportData) -> go.Figure:
    """One line per trial: its varied hyperparameters, how long it trained, its status, and
    the metric at the epoch every trial reached (also the line's colour)."""
    t = data.trials
    dims = [axis(t[name], name, name in data.log_scale) for name in data.varied]
    dims += [
        axis(t["epochs"].astype(float), "epochs trained", False),
        axis(t["status"], "status", False),
        {"label": f"{data.metric} @ epoch {data.epoch}", "values": t[data.metric].tolist()},
    ]
    line = {
        "color": t[data.metric].tolist(),
        "colorscale": "Viridis",
        "showscale": True,
        "colorbar": {"title": {"text": f"{data.metric}<br>epoch {data.epoch}"}},
    }
    fig = go.Figure(go.Parcoords(line=line, dimensions=dims))
    return fig.update_layout(height=420, margin={"l": 60, "r": 60, "t": 50, "b": 30})


def learning_curves(data: ReportData) -> go.Figure:
    fig, shown = go.Figure(), set()
    for trial_id, curve in data.history.groupby("trial_id", sort=False):
        status = curve["status"].iloc[0]
        fig.add_trace(
            go.Scatter(
                x=curve["epoch"],
                y=curve[data.metric],
                mode="lines+markers",
                name=status,
                legendgroup=status,
                showlegend=status not in shown,
                hovertext=str(trial_id),
                line={
                    "color": STATUS_COLOURS[status],
                    "dash": "solid" if status == "completed" else "dash",
                },
            )
        )
        shown.add(status)
    return fig.update_layout(xaxis_title="epoch", yaxis_title=data.metric, height=380)


def best_so_far(data: ReportData) -> go.Figure:
    b = data.best_so_far
    fig = go.Figure(
        [
            go.Scatter(
                x=b["minutes"],
                y=b["value"],
                mode="markers",
                name="every epoch",
                marker={"color": "lightgrey", "size": 5},
            ),
            go.Scatter(
                x=b["minutes"], y=b["best"], mode="lines", name="best so far", line={"shape": "hv"}
            ),
        ]
    )
    return fig.update_layout(
        xaxis_title="minutes since the first trial started", yaxis_title=data.metric, height=340
    )


def importance(ranking: pd.DataFrame, metric: str) -> go.Figure:
    fig = go.Figure(
        [
            go.Bar(
                x=ranking["variance_share"],
                y=ranking["hyperparameter"],
                orientation="h",
                name="share of the variance",
            ),
            go.Scatter(
                x=ranking["chance"],
                y=ranking["hyperparameter"],
                mode="markers",
                name="expected by chance",
                marker={"symbol": "line-ns-open", "size": 18, "color": "black"},
            ),
        ]
    )
    epoch = int(ranking["epoch"].iloc[0])
    fig.update_yaxes(autorange="reversed")
    return fig.update_layout(
        xaxis={
            "range": [0, 1],
            "title": f"share of {metric} variance " f"at epoch {epoch} (eta², one-way)",
        },
        height=300,
    )


def cost(data: ReportData) -> go.Figure:
    c, fig = data.cost, go.Figure()
    for status, group in c.groupby("status"):
        fig.add_trace(
            go.Scatter(
                x=group["seconds_per_epoch"],
                y=group[data.metric],
                mode="markers",
                name=str(status),
                hovertext=group["trial_id"],
                marker={"color": STATUS_COLOURS[str(status)], "size": 9},
            )
        )
    front = c[c["pareto"]]
    fig.add_trace(
        go.Scatter(
            x=front["seconds_per_epoch"],
            y=front[data.metric],
            name="Pareto front",
            mode="lines",
            line={"shape": "hv", "color": "black", "width": 1},
        )
    )
    return fig.update_layout(
        xaxis_title="seconds per epoch (the trial's cost, whatever its length)",
        yaxis_title=f"{data.metric} at epoch {data.epoch}, which every trial reached",
        height=360,
    )


def heatmap(cells: pd.DataFrame, x: str, y: str, metric: str) -> go.Figure:
    mean = cells.pivot(index=y, columns=x, values="mean")
    text = cells.assign(label=cells["label"].str.replace("\n", "<br>")).pivot(
        index=y, columns=x, values="label"
    )
    fig = go.Figure(
        go.Heatmap(
            z=mean.to_numpy(),
            x=[str(v) for v in mean.columns],
            y=[str(v) for v in mean.index],
            text=text.to_numpy(),
            texttemplate="%{text}",
            colorscale="Viridis",
            colorbar={"title": {"text": metric}},
        )
    )
    return fig.update_layout(xaxis_title=x, yaxis_title=y, height=380)


def confusion(evaluation: dict[str, Any]) -> go.Figure:
    names = evaluation["class_names"]
    fig = go.Figure(
        go.Heatmap(
            z=evaluation["confusion"],
            x=names,
            y=names,
            colorscale="Blues",
            texttemplate="%{z}",
            showscale=False,
        )
    )
    fig.update_yaxes(autorange="reversed")
    return fig.update_layout(xaxis_title="predicted class", yaxis_title="true class", height=380)


def table_html(df: pd.DataFrame, sortable: bool = False) -> str:
    cells = df.map(lambda v: f"{v:.4g}" if isinstance(v, float) else str(v))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
        for row in cells.to_numpy().tolist()
    )
    attribute = ' class="sortable"' if sortable else ""
    return f"<table{attribute}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown_table(df: pd.DataFrame) -> str:
    cells = df.map(lambda v: f"{v:.4g}" if isinstance(v, float) else str(v))
    lines = [" | ".join(map(str, df.columns)), " | ".join("---" for _ in df.columns)]
    lines += [" | ".join(row) for row in cells.to_numpy().tolist()]
    return "\n".join(f"| {line} |" for line in lines)


Section = tuple[str, str, go.Figure | None]  # title, HTML, and a figure below it


def sections(data: ReportData) -> list[Section]:
    """The page's sections, in order; those with nothing to show are left out."""
    found = [
        start_and_best(data),
        every_trial(data),
        grid_heatmap(data),
        ("Learning curves", "<p>Dashed: stopped before the last epoch.</p>", learning_curves(data)),
        ("Best so far", "", best_so_far(data)),
        what_mattered(data),
        ("Cost", "<p>Every trial at the same epoch, so that none looks cheap for having been "
         "stopped.</p>", cost(data)),
        ("Top trials", "<p>Click a column to sort.</p>" + table_html(data.top, sortable=True),
         None),
        final_model(data),
        settings_and_command(data),
    ]  # fmt: skip
    return [section for section in found if section is not None]


def start_and_best(data: ReportData) -> Section | None:
    if data.versus is None:
        return None
    frame, verdict = data.versus
    text = f"<p>{html.escape(verdict)}</p>" + table_html(frame)
    return "Where the search started, and what it found", text, None


def every_trial(data: ReportData) -> Section:
    text = (
        f"<p>{len(data.trials)} trials, one line each; drag along an axis to select. Colour: "
        f"{data.metric} at epoch {data.epoch}, the last epoch every trial reached.</p>"
    )
    notes = "".join(f"<p>{html.escape(note)}</p>" for note in data.notes)
    return "Every trial", text + notes, parallel_coordinates(data)


def grid_heatmap(data: ReportData) -> Section | None:
    if data.heatmap is None:
        return None
    cells, x, y, note = data.heatmap
    return f"{y} × {x}", f"<p>{html.escape(note)}.</p>", heatmap(cells, x, y, data.metric)


def what_mattered(data: ReportData) -> Section | None:
    if data.importance is None:
        return None
    text = (
        "<p>Share of the variance each explains alone; with few trials, read the ranking as a "
        "hint: an unrelated hyperparameter explains about the black mark.</p>"
    )
    return "Which hyperparameters mattered", text, importance(data.importance, data.metric)


def final_model(data: ReportData) -> Section | None:
    if (e := data.evaluation) is None:
        return None
    classes = Evaluation(e["class_names"], np.array(e["confusion"])).per_class()
    flipped = e.get("flip_accuracy")  # (evaluations from before flip TTA lack it)
    with_flip = "" if flipped is None else f"; <b>{flipped:.4f}</b> with each photo's mirror too"
    text = (
        f"<p>Test accuracy <b>{e['accuracy']:.4f}</b>{with_flip} on {e['images']} images, read "
        f"once ({html.escape(e['title'])}).</p>" + table_html(classes)
    )
    return "The final model", text, confusion(e)


def settings_and_command(data: ReportData) -> Section:
    settings = pd.DataFrame({"setting": list(data.settings), "value": list(data.settings.values())})
    command = f"<pre>{html.escape(data.command)}</pre>" if data.command else ""
    return "Settings and command", command + table_html(settings), None


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
th {{ background: #f3f3f3; cursor: default; }} table.sortable th {{ cursor: pointer; }}
pre {{ background: #f6f6f6; padding: .6em; white-space: pre-wrap; }}
</style>
<script>
// Errors are written into the page, where a browser test reads them back.
window.addEventListener("error", e => report("error: " + e.message));
window.addEventListener("unhandledrejection", e => report("rejection: " + e.reason));
function report(message) {{
  document.body.dataset.errors = ((document.body.dataset.errors || "") + message + "; ");
}}
</script>
<script src="{script}"></script></head>
<body data-errors="">
<h1>{title}</h1>
{body}
<script>
const figures = {figures};
Promise.all(Object.entries(figures).map(([id, fig]) =>
  Plotly.newPlot(id, fig.data, fig.layout, {{responsive: true, displaylogo: false}})))
  .then(() => {{
    const lines = document.getElementById("plot-0");
    lines.dataset.lines = lines.data[0].dimensions[0].values.length;
    document.body.dataset.rendered = performance.now().toFixed(0);
  }}, error => report("plot: " + error));
document.querySelectorAll("table.sortable th").forEach((th, column) =>
  th.addEventListener("click", () => {{
    const body = th.closest("table").tBodies[0], rows = Array.from(body.rows);
    const key = row => {{ const v = row.cells[column].textContent, n = parseFloat(v);
                         return isNaN(n) ? v : n; }};
    const up = th.dataset.order !== "up"; th.dataset.order = up ? "up" : "down";
    rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (up ? 1 : -1));
    rows.forEach(row => body.appendChild(row));
  }}));
</script>
</body></html>
"""


def render(data: ReportData) -> str:
    """The page (HTML); the plots' data inline, plotly.js beside it (write)."""
    body: list[str] = []
    figures: dict[str, Any] = {}
    for title, text, figure in sections(data):
        body.append(f"<h2>{html.escape(title)}</h2>\n{text}")
        if figure is not None:
            plot_id = f"plot-{len(figures)}"
            body.append(f'<div id="{plot_id}" class="plot"></div>')
            figures[plot_id] = json.loads(figure.to_json())
    title = html.escape(f"{data.name}: {data.kind}, {len(data.trials)} trials")
    return PAGE.format(
        title=title,
        script=SCRIPT,
        body="\n".join(body),
        figures=json.dumps(figures, separators=(",", ":")).replace("</", "<\\/"),
    )


def copy_script(folder: Path) -> None:
    """plotly.js beside the page, from the installed package: no network needed."""
    import plotly

    shutil.copyfile(Path(plotly.__file__).parent / "package_data" / SCRIPT, folder / SCRIPT)
