"""The report's charts (altair). Each is a `Chart`: either an altair chart or, where its data are all null, a note
saying why it is absent: never an empty or broken chart.

Series are `backend precision device` (plus `@ machine` when several machines or runs are compared), so runs from
different machines are coloured apart in every chart.

Charts draw every measured cell (ok and noisy alike) with its interval (value × (1 ± u)): whiskers on points, rules
on bars. A noisy cell is drawn like any other (its whisker shows its spread): only what is undecided is faded (a
speedup whose comparison with the baseline is undecided). Charts span the page's width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import altair as alt
import polars as pl

from infbench.report.frame import (
    all_null,
    complete,
    measured_cells,
    several_machines,
    several_models,
    shape_label,
    with_series,
)

FACET_COLUMNS = 3
WIDTH = 340  # three panels with their axes fill the page (max-width 1400 px)
HEIGHT = 240
WIDE = 1100  # a chart of one panel, at the page's width


@dataclass
class Chart:
    name: str  # file stem under plots/ and the HTML anchor
    title: str
    description: str
    chart: alt.TopLevelMixin | None = None
    note: str | None = None  # why the chart is absent


def _values(df: pl.DataFrame, columns: list[str]) -> alt.Data:
    keep = [c for c in dict.fromkeys(columns) if c in df.columns]
    return alt.Data(values=df.select(keep).to_dicts())


CELL_TIPS = [
    alt.Tooltip("series:N", title="backend precision device (@ machine)"),
    alt.Tooltip("image_size:Q", title="image size (px)"),
    alt.Tooltip("batch_size:Q", title="batch"),
    alt.Tooltip("status:N", title="status"),
]
TIP_COLUMNS = ["series", "variant", "cell", "image_size", "batch_size", "machine", "status"]
SOLID = "true"  # every measured cell is drawn solid: a cell's own spread shows in its whisker, never as a fade
NOTHING = "No cell was measured (none ran ok or unstable), so there is nothing to draw (see the failures table)."


def with_intervals(df: pl.DataFrame) -> pl.DataFrame:
    """Add the 95% interval ends the charts draw: throughput, time per image and p50 latency × (1 ± u)."""
    tu = pl.col("throughput_uncertainty_pct").fill_null(0) / 100
    lu = pl.col("latency_uncertainty_pct").fill_null(0) / 100
    # An uncertainty of 100% or more has no lower end on the log axes: its interval is drawn down to 1%.
    t_low, l_low = (1 - tu).clip(lower_bound=0.01), (1 - lu).clip(lower_bound=0.01)
    return df.with_columns(
        (pl.col("throughput_img_s") * t_low).alias("tput_low"),
        (pl.col("throughput_img_s") * (1 + tu)).alias("tput_high"),
        (pl.col("time_per_image_ms") * t_low).alias("tpi_low"),
        (pl.col("time_per_image_ms") * (1 + tu)).alias("tpi_high"),
        (pl.col("latency_ms_p50") * l_low).alias("p50_low"),
        (pl.col("latency_ms_p50") * (1 + lu)).alias("p50_high"),
    )


def _points(base: alt.Chart, **encodings) -> alt.Chart:
    """A point per cell, in the series colour, filled. One layer with a fill opacity, so that no layer is ever
    empty and the legend keeps filled symbols."""
    return base.mark_point(filled=True, size=40, opacity=1, strokeWidth=1.5).encode(
        stroke=alt.Stroke("variant:N", legend=None),
        fillOpacity=alt.condition(SOLID, alt.value(1.0), alt.value(0.0)),
        **encodings,
    )


def _tip(column: str, title: str, fmt: str = ",.6~g") -> alt.Tooltip:
    return alt.Tooltip(f"{column}:Q", title=title, format=fmt)


def _color() -> alt.Color:
    return alt.Color(
        "variant:N", title="backend precision device", legend=alt.Legend(orient="bottom", columns=3, symbolOpacity=1)
    )


def _multi(d: pl.DataFrame) -> bool:
    return several_machines(d)


def _machine(d: pl.DataFrame, *channels: str) -> dict:
    """Encodings that tell machines apart when several are compared (the colour stays the variant)."""
    if not _multi(d):
        return {}
    legend = alt.Legend(orient="bottom", title="machine")
    make = {
        "strokeDash": lambda: alt.StrokeDash(
            "machine:N",
            legend=alt.Legend(
                orient="bottom",
                title="machine",
                symbolType="stroke",
                symbolSize=300,
                symbolStrokeColor="#333",
                symbolStrokeWidth=2,
            ),
        ),
        "shape": lambda: alt.Shape("machine:N", legend=legend),
        "opacity": lambda: alt.Opacity("machine:O", legend=legend, scale=alt.Scale(range=[1.0, 0.45])),
    }
    return {c: make[c]() for c in channels}


BATCH_X = alt.X("batch_size:Q", title="batch size", scale=alt.Scale(type="log", base=2), axis=alt.Axis(tickMinStep=1))


def _line_facet(
    data, x, y, tips, facet: str, facet_title: str, d: pl.DataFrame, band: tuple[str, str] | None = None
) -> alt.FacetChart:
    """Lines per series (dashed per machine when several) with a hoverable point per cell ,
    whiskers from band[0] to band[1] (the 95% interval), one panel per value of `facet`."""
    base = alt.Chart(width=WIDTH, height=HEIGHT).encode(x=x, y=y, color=_color())
    lines = base.mark_line().encode(detail="series:N", **_machine(d, "strokeDash"))
    layers = [lines, _points(base, tooltip=tips)]
    if band:
        whiskers = (
            alt.Chart()
            .mark_rule(strokeWidth=1.5)
            .encode(x=x, y=alt.Y(f"{band[0]}:Q"), y2=f"{band[1]}:Q", color=_color(), tooltip=tips)
        )
        layers.insert(1, whiskers)
    return (
        alt.layer(*layers, data=data)
        .facet(facet=alt.Facet(f"{facet}:O", title=facet_title), columns=FACET_COLUMNS)
        .resolve_scale(y="independent")
    )


def _need(cells: pl.DataFrame, columns: list[str], reason: str) -> tuple[pl.DataFrame, str | None]:
    """The measured rows that have every column in `columns`, or the note saying why there are none."""
    if cells.height == 0:
        return cells, NOTHING
    have = cells.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in columns))
    return (have, None) if have.height else (have, reason)


TPUT_TIPS = CELL_TIPS + [
    _tip("throughput_img_s", "img/s"),
    _tip("throughput_uncertainty_pct", "± (95%, %)", ".1f"),
    _tip("latency_ms_p50", "p50 latency (ms)"),
    alt.Tooltip("repetitions:Q", title="repetitions"),
    alt.Tooltip("disturbed_repetitions:Q", title="disturbed repetitions"),
    alt.Tooltip("launch_bound:N", title="launch-bound"),
]
TPUT_COLUMNS = [
    "throughput_img_s",
    "throughput_uncertainty_pct",
    "tput_low",
    "tput_high",
    "latency_ms_p50",
    "repetitions",
    "disturbed_repetitions",
    "launch_bound",
]


def _line_chart(
    c: Chart, cells, need: list[str], reason: str, y: alt.Y, tips: list, columns: list[str], **how
) -> Chart:
    """`c` drawn as lines per series from the measured cells that have every column in `need` (else its note says
    `reason`); `how`: the x encoding (`x`, or `x_of(data)`), the panels (`facet`, default one per image size) and
    the whiskers (`band`)."""
    d, c.note = _need(cells, need, reason)
    if not c.note:
        x = how["x_of"](d) if "x_of" in how else how.get("x", BATCH_X)
        facet = how.get("facet", ("image_size", "image size (px)"))
        c.chart = _line_facet(_values(d, TIP_COLUMNS + columns), x, y, tips, *facet, d, band=how.get("band"))
    return c


# Throughput charts: their data, y axis, tooltips and 95% whiskers.
NO_THROUGHPUT = "No measured cell has a throughput."
TPUT_Y = alt.Y("throughput_img_s:Q", title="throughput (img/s, log scale)", scale=alt.Scale(type="log"))
TPUT = {"y": TPUT_Y, "tips": TPUT_TIPS, "columns": TPUT_COLUMNS, "band": ("tput_low", "tput_high")}


def _size_x(d: pl.DataFrame) -> alt.X:
    """Image size on a linear axis with a tick at every measured size."""
    ticks = sorted(d.get_column("image_size").unique().to_list())
    return alt.X("image_size:Q", title="image size (px)", scale=alt.Scale(zero=False), axis=alt.Axis(values=ticks))


def throughput_vs_size(cells):
    description = "Images per second at each image size, one panel per batch size."
    c = Chart("throughput_vs_size", "Throughput vs image size", description)
    need = ["throughput_img_s", "image_size"]
    return _line_chart(c, cells, need, NO_THROUGHPUT, **TPUT, x_of=_size_x, facet=("batch_size", "batch size"))


def throughput_vs_batch(cells):
    description = "Images per second at each batch size, one panel per image size."
    c = Chart("throughput_vs_batch", "Throughput vs batch size", description)
    return _line_chart(c, cells, ["throughput_img_s", "batch_size"], NO_THROUGHPUT, **TPUT)


def speedup(cells, meta):
    baseline = meta.get("baseline") or "torch fp32 (plain eager) on the same machine, device, size and batch"
    d, note = _need(
        cells,
        ["speedup_vs_baseline"],
        "No speedup figures: no measured torch fp32 baseline cell on the same device, image size and batch size.",
    )
    c = Chart(
        "speedup",
        "Speedup vs baseline",
        f"Throughput relative to the baseline ({baseline}); the whisker is the speedup's 95% interval, the dashed "
        "line marks 1×. Faded bars: undecided (the interval reaches into the margin around 1×: more repetitions or a "
        "quieter machine would decide it).",
        note=note,
    )
    if not note:
        d = d.with_columns(pl.col("speedup_decided").fill_null(False))
        tips = CELL_TIPS + [
            _tip("speedup_vs_baseline", "speedup (×)", ".3f"),
            _tip("speedup_low", "interval low (×)", ".3f"),
            _tip("speedup_high", "interval high (×)", ".3f"),
            alt.Tooltip("speedup_verdict:N", title="against the baseline"),
            _tip("throughput_img_s", "img/s"),
        ]
        columns = ["speedup_vs_baseline", "speedup_low", "speedup_high", "speedup_decided", "speedup_verdict"]
        columns.append("throughput_img_s")
        data = _values(d, TIP_COLUMNS + columns)
        base = alt.Chart(width=WIDTH, height=HEIGHT).encode(
            x=alt.X("batch_size:O", title="batch size", axis=alt.Axis(labelAngle=0)),
            xOffset="series:N",
            tooltip=tips,
        )
        bars = base.mark_bar().encode(
            y=alt.Y("speedup_vs_baseline:Q", title="speedup (×)"),
            color=_color(),
            fillOpacity=alt.condition("datum.speedup_decided", alt.value(1.0), alt.value(0.3)),
            **_machine(d, "opacity"),
        )
        whiskers = base.mark_rule(color="#222", strokeWidth=1.2).encode(y="speedup_low:Q", y2="speedup_high:Q")
        one = alt.Chart().mark_rule(color="black", strokeDash=[4, 3]).encode(y=alt.datum(1))
        c.chart = alt.layer(bars, whiskers, one, data=data).facet(
            facet=alt.Facet("image_size:O", title="image size (px)"), columns=FACET_COLUMNS
        )
    return c


def time_per_image(cells):
    description = "Milliseconds per image (1 / throughput) with its 95% interval, one panel per image size."
    c = Chart("time_per_image", "Time per image", description)
    y = alt.Y("time_per_image_ms:Q", title="time per image (ms, log scale)", scale=alt.Scale(type="log"))
    tips = CELL_TIPS + [
        _tip("time_per_image_ms", "ms per image"),
        _tip("throughput_uncertainty_pct", "± (95%, %)", ".1f"),
        _tip("throughput_img_s", "img/s"),
    ]
    columns = ["time_per_image_ms", "tpi_low", "tpi_high", "throughput_uncertainty_pct"]
    reason = "No measured cell has a time per image."
    return _line_chart(c, cells, ["time_per_image_ms"], reason, y, tips, columns, band=("tpi_low", "tpi_high"))


def latency(cells):
    d, note = _need(cells, ["latency_ms_p50"], "No measured cell has a latency.")
    c = Chart(
        "latency",
        "Latency p50 / p99 per cell",
        "Batch latency per cell, one batch at a time, synchronised after each: the dot is the p50 with its 95% "
        "interval (the thick segment), the thin bar reaches the p99. '(noisy)': a ± wider than the tolerance.",
        note=note,
    )
    if not note:
        d = d.with_columns(
            pl.coalesce("latency_ms_p99", "latency_ms_p50").alias("_p99"),
            pl.when(pl.col("status") == "unstable")
            .then(pl.concat_str([pl.col("cell"), pl.lit(" (noisy)")]))
            .otherwise(pl.col("cell"))
            .alias("cell"),
        )
        tips = CELL_TIPS + [
            _tip("latency_ms_p50", "p50 (ms)"),
            _tip("latency_uncertainty_pct", "p50 ± (95%, %)", ".1f"),
            _tip("latency_ms_p90", "p90 (ms)"),
            _tip("latency_ms_p99", "p99 (ms)"),
            alt.Tooltip("repetitions:Q", title="repetitions"),
        ]
        columns = ["latency_ms_p50", "latency_uncertainty_pct", "p50_low", "p50_high", "latency_ms_p90"]
        data = _values(d, TIP_COLUMNS + columns + ["latency_ms_p99", "repetitions", "_p99"])
        y = alt.Y("cell:N", title=None, sort=None, axis=alt.Axis(labelLimit=360))
        x_scale = alt.Scale(type="log")
        base = alt.Chart(data, width=WIDE).encode(y=y, color=_color(), tooltip=tips)
        rule = base.mark_rule(strokeWidth=2, opacity=0.45).encode(
            x=alt.X("latency_ms_p50:Q", title="latency (ms, log scale)", scale=x_scale), x2="_p99:Q"
        )
        band = base.mark_rule(strokeWidth=4).encode(x="p50_low:Q", x2="p50_high:Q")
        p99 = base.mark_tick(thickness=2, size=12).encode(x="_p99:Q")
        p50 = _points(base, x="latency_ms_p50:Q")
        c.chart = alt.layer(rule, band, p50, p99).properties(height=alt.Step(14))
    return c


def heatmaps(cells):
    d, note = _need(cells, ["throughput_img_s", "image_size", "batch_size"], "No measured cell has a throughput.")
    c = Chart(
        "heatmap",
        "Throughput heatmaps",
        "Images per second over image size × batch size, one panel per backend, precision and device (hover for the "
        "± uncertainty).",
        note=note,
    )
    if not note:
        lo, hi = d.get_column("throughput_img_s").min(), d.get_column("throughput_img_s").max()
        middle = math.sqrt(lo * hi) if lo and lo > 0 else (lo + hi) / 2
        d = d.with_columns(pl.col("throughput_img_s").round_sig_figs(3).alias("_label"))
        data = _values(d, TIP_COLUMNS + TPUT_COLUMNS + ["_label"])
        scale = alt.Scale(type="log", scheme="blues") if lo and lo > 0 else alt.Scale(scheme="blues")
        base = alt.Chart(width=alt.Step(48), height=alt.Step(30)).encode(
            x=alt.X("batch_size:O", title="batch size", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("image_size:O", title="image size (px)", sort="descending"),
            tooltip=TPUT_TIPS,
        )
        rect = base.mark_rect().encode(
            color=alt.Color("throughput_img_s:Q", title="img/s", scale=scale, legend=alt.Legend(format=".3~s")),
        )
        text = base.mark_text(fontSize=9).encode(
            text=alt.Text("_label:Q", format=".3~s"),
            color=alt.condition(alt.datum.throughput_img_s > middle, alt.value("white"), alt.value("black")),
        )
        c.chart = alt.layer(rect, text, data=data).facet(facet=alt.Facet("series:N", title=None), columns=3)
    return c


def pareto_front(points: list[dict], x: str, y: str) -> set[int]:
    """Indices of the points no other point beats on both `x` and `y` (higher is better for both)."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][x], -points[i][y]))
    front, best_y = set(), -math.inf
    for i in order:
        if points[i][y] > best_y:
            front.add(i)
            best_y = points[i][y]
    return front


def accuracy_vs_throughput(cells, meta):
    tol = meta.get("tolerance_points")
    c = Chart(
        "accuracy_vs_throughput",
        "Accuracy vs throughput",
        "Each variant at its fastest ok cell: top-1 accuracy on the test split against throughput. The dashed line "
        "joins the Pareto front (no other variant is both faster and more accurate); crosses break the "
        + (f"{tol}-point " if tol is not None else "")
        + "accuracy tolerance."
        + _accuracy_sizes(cells),
    )
    reason = "No accuracy figures: the accuracy jobs did not run for any variant that has measured cells."
    d, c.note = _need(cells, ["accuracy_top1", "throughput_img_s"], reason)
    if c.note:
        return c
    best = fastest_variants(d, tol)
    if best.height == 0:
        c.note = "No accuracy point: no measured cell of the variants with accuracy figures."
        return c
    c.chart = alt.layer(*_accuracy_layers(best, meta), data=_values(best, TIP_COLUMNS + ACCURACY_POINT_COLUMNS))
    return c


def _accuracy_sizes(cells) -> str:
    """At which size the accuracy was measured (the training size), whatever the cells' sizes."""
    if "accuracy_image_size" not in cells.columns:
        return ""
    sizes = sorted(cells.get_column("accuracy_image_size").drop_nulls().unique().to_list())
    return f" Top-1 measured at {', '.join(map(str, sizes))} px, whatever the cell's size." if sizes else ""


ACCURACY_POINT_COLUMNS = ["accuracy_pct", "accuracy_drop", "throughput_img_s", "tolerance", "pareto"]
SHAPE_KEYS = ["machine", "device", "image_size", "batch_size"]


def pareto_by_shape(d: pl.DataFrame) -> pl.DataFrame:
    """Every measured cell with accuracy (noisy ones too), marked `pareto` where no cell of the same machine,
    device, image size and batch size (any model, backend, precision) is both faster and more accurate."""
    ok = measured_cells(d).filter(pl.col("accuracy_top1").is_not_null())
    ok = ok.with_columns((pl.col("accuracy_top1") * 100).alias("accuracy_pct"))
    parts = []
    for _, group in ok.group_by(SHAPE_KEYS, maintain_order=True):
        group = group.sort("throughput_img_s")
        front = pareto_front(group.to_dicts(), "throughput_img_s", "accuracy_pct")
        parts.append(group.with_columns(pl.Series("pareto", [i in front for i in range(group.height)])))
    return pl.concat(parts) if parts else ok.with_columns(pl.lit(False).alias("pareto"))


def models_accuracy_vs_throughput(cells, meta):
    """Several models: accuracy against throughput of every measured cell, one panel per device, image size
    and batch size, the Pareto front of each panel joined and ringed."""
    c = Chart(
        "models_accuracy_vs_throughput",
        "Accuracy vs throughput across models",
        "Every measured cell of every model: top-1 accuracy of its variant on the test split against its throughput, "
        "one panel per device, image size and batch size. Colour: model; shape: backend and precision. The dashed "
        "line joins each panel's Pareto front (no other cell of that panel is both faster and more accurate), the "
        "rings mark it.",
    )
    reason = "No accuracy figures: the accuracy jobs did not run for any variant that has measured cells."
    d, c.note = _need(cells, ["accuracy_top1", "throughput_img_s"], reason)
    if c.note:
        return c
    points = pareto_by_shape(d).with_columns(
        pl.concat_str([pl.col("backend"), pl.lit(" "), pl.col("precision")]).alias("runtime"),
        shape_label(pl.col("device")).alias("panel"),
    )
    if points.height == 0:
        c.note = "No accuracy point: no measured cell with accuracy figures."
        return c
    x = alt.X("throughput_img_s:Q", title="throughput (img/s, log scale)", scale=alt.Scale(type="log"))
    y = alt.Y("accuracy_pct:Q", title="top-1 accuracy (%)", scale=alt.Scale(zero=False))
    tips = CELL_TIPS + [
        alt.Tooltip("model:N", title="model"),
        _tip("accuracy_pct", "top-1 accuracy (%)", ".2f"),
        _tip("throughput_img_s", "img/s"),
        alt.Tooltip("pareto:N", title="on the Pareto front"),
    ]
    base = alt.Chart(width=WIDTH, height=HEIGHT)
    line = base.mark_line(strokeDash=[6, 4], color="#555").encode(x=x, y=y).transform_filter(alt.datum.pareto)
    rings = base.mark_point(size=260, color="#555").encode(x=x, y=y).transform_filter(alt.datum.pareto)
    dots = base.mark_point(size=90, filled=True).encode(
        x=x,
        y=y,
        color=alt.Color("model:N", title="model"),
        shape=alt.Shape("runtime:N", title="runtime"),
        tooltip=tips,
    )
    columns = [*TIP_COLUMNS, "model", "runtime", "panel", "accuracy_pct", "throughput_img_s", "pareto"]
    c.chart = alt.layer(line, rings, dots, data=_values(points, columns)).facet(
        facet=alt.Facet("panel:N", title=None), columns=3
    )
    return c


def fastest_variants(d: pl.DataFrame, tol) -> pl.DataFrame:
    """Each variant's fastest measured cell (noisy ones too), with its accuracy in %, its tolerance verdict and
    whether it is on the Pareto front of throughput and accuracy."""
    best = (
        measured_cells(d)
        .sort("throughput_img_s", descending=True)
        .unique(["machine", "model", "backend", "precision", "device"], keep="first")
    )
    over = pl.col("over_tolerance")
    if tol is not None:
        over = pl.coalesce(over, pl.col("accuracy_drop") > float(tol))
    best = best.with_columns(
        (pl.col("accuracy_top1") * 100).alias("accuracy_pct"),
        pl.when(over.is_null())
        .then(pl.lit("not checked"))
        .when(over)
        .then(pl.lit("over tolerance"))
        .otherwise(pl.lit("within tolerance"))
        .alias("tolerance"),
    ).sort("throughput_img_s")
    front = pareto_front(best.to_dicts(), "throughput_img_s", "accuracy_pct")
    return best.with_columns(pl.Series("pareto", [i in front for i in range(best.height)], dtype=pl.Boolean))


def _accuracy_layers(best: pl.DataFrame, meta: dict) -> list:
    """The Pareto line, rings on its points, a dot per variant and, with a tolerance, the accuracy floor."""
    tips = CELL_TIPS + [
        _tip("accuracy_pct", "top-1 accuracy (%)", ".2f"),
        _tip("accuracy_drop", "drop (points)", ".2f"),
        _tip("throughput_img_s", "img/s"),
        alt.Tooltip("tolerance:N", title="tolerance"),
        alt.Tooltip("pareto:N", title="on the Pareto front"),
    ]
    x = alt.X(
        "throughput_img_s:Q", title="throughput at the fastest cell (img/s, log scale)", scale=alt.Scale(type="log")
    )
    y = alt.Y("accuracy_pct:Q", title="top-1 accuracy (%)", scale=alt.Scale(zero=False))
    base = alt.Chart(width=WIDE, height=360)
    front_line = base.mark_line(strokeDash=[6, 4], color="#555").encode(x=x, y=y).transform_filter(alt.datum.pareto)
    shapes = alt.Scale(
        domain=["within tolerance", "over tolerance", "not checked"], range=["circle", "cross", "square"]
    )
    dots = base.mark_point(size=120, filled=True).encode(
        x=x,
        y=y,
        color=_color(),
        shape=alt.Shape("tolerance:N", scale=shapes, title="accuracy"),
        tooltip=tips,
        **_machine(best, "opacity"),
    )
    rings = base.mark_point(size=300, color="#555").encode(x=x, y=y).transform_filter(alt.datum.pareto)
    return [front_line, rings, dots, *_accuracy_floor(meta)]


def _accuracy_floor(meta: dict) -> list:
    """A rule and its label at the lowest accuracy the tolerance allows (none without a tolerance)."""
    reference, tol = meta.get("model_accuracy"), meta.get("tolerance_points")
    if reference is None or tol is None:
        return []
    floor = 100 * float(reference) - float(tol)
    rule = alt.Chart(alt.Data(values=[{"floor": floor, "label": f"tolerance: {floor:.2f}%"}]))
    return [
        rule.mark_rule(color="#b42318", strokeDash=[2, 2]).encode(
            y="floor:Q", tooltip=[alt.Tooltip("label:N", title="accuracy floor")]
        ),
        rule.mark_text(align="left", dx=4, dy=-6, color="#b42318", fontSize=10).encode(
            y="floor:Q", x=alt.value(0), text="label:N"
        ),
    ]


def utilization(cells):
    description = (
        "Achieved FLOP/s as a percentage of the measured peak for the cell's precision, one panel per image size."
    )
    c = Chart("utilization", "Utilisation vs batch size", description)
    reason = "No FLOP-based utilisation: the FLOP counts or the hardware probe's measured peak are missing."
    y = alt.Y("utilization_pct:Q", title="utilisation (% of measured peak)")
    tips = CELL_TIPS + [_tip("utilization_pct", "utilisation (%)", ".2f"), _tip("achieved_tflops", "TFLOP/s")]
    return _line_chart(c, cells, ["utilization_pct"], reason, y, tips, ["utilization_pct", "achieved_tflops"])


def memory(cells):
    if cells.height == 0:
        return Chart(
            "memory",
            "Memory per backend",
            "",
            note=NOTHING,
        )
    kinds = {
        "device_memory_peak_mib": "device peak (NVML)",
        "allocator_memory_peak_mib": "allocator peak",
        "host_memory_peak_mib": "host peak (RSS)",
    }
    long = pl.concat(
        [
            cells.filter(pl.col(col).is_not_null()).with_columns(
                pl.col(col).alias("memory_mib"), pl.lit(kind).alias("memory")
            )
            for col, kind in kinds.items()
        ]
    )
    absent = [kind for col, kind in kinds.items() if all_null(cells, col)]
    description = (
        "Peak memory per cell by backend, one panel per image size: device memory at device level (NVML, the same "
        "for every backend), the runtime allocator's own peak where it has one, and host resident memory."
    )
    if "device peak (NVML)" in absent and long.height:
        description += " Device memory is absent: no GPU cells (or no NVML)."
    c = Chart("memory", "Memory per backend", description)
    if long.height == 0:
        c.note = "No memory figures: neither device nor host peak memory was measured for any measured cell."
        return c
    tips = CELL_TIPS + [alt.Tooltip("memory:N", title="memory"), _tip("memory_mib", "peak (MiB)", ",.1f")]
    data = _values(long, TIP_COLUMNS + ["memory_mib", "memory"])
    c.chart = (
        alt.Chart(data, width=WIDTH, height=HEIGHT)
        .mark_bar()
        .encode(
            x=alt.X("batch_size:O", title="batch size", axis=alt.Axis(labelAngle=0)),
            xOffset="series:N",
            y=alt.Y("memory_mib:Q", title="peak memory (MiB)"),
            color=_color(),
            tooltip=tips,
            **_machine(long, "opacity"),
        )
        .facet(
            row=alt.Row("memory:N", title=None, sort=list(kinds.values())),
            column=alt.Column("image_size:O", title="image size (px)"),
        )
        .resolve_scale(y="independent")
    )
    return c


def _roof_lines(peaks: list[dict], lo: float, hi: float, multi_machine: bool) -> list[dict]:
    rows = []
    for p in peaks:
        peak, bw = p.get("peak_tflops"), p.get("bandwidth_gb_s")
        if not peak:
            continue
        label = f"{p.get('device')} {p.get('precision')} peak" + (f" @ {p.get('machine')}" if multi_machine else "")
        grid = [lo * (hi / lo) ** (i / 40) for i in range(41)]
        if bw:
            ridge = peak * 1000 / bw  # FLOP/byte where the bandwidth roof meets the compute roof
            if lo < ridge < hi:
                grid = sorted(grid + [ridge])
        for x in grid:
            y = min(peak, bw * x / 1000) if bw else peak
            rows.append(
                {"roof": label, "arithmetic_intensity": x, "tflops": y, "peak_tflops": peak, "bandwidth_gb_s": bw}
            )
    return rows


def _roofs(d: pl.DataFrame, peaks: list[dict], multi_machine: bool) -> list:
    """The measured roofs as one line layer (none without peaks), over the cells' intensities and every ridge."""
    lo = d.get_column("arithmetic_intensity").min() / 4
    hi = d.get_column("arithmetic_intensity").max() * 4
    for p in peaks:
        if p.get("bandwidth_gb_s"):
            ridge = p["peak_tflops"] * 1000 / p["bandwidth_gb_s"]
            lo, hi = min(lo, ridge / 4), max(hi, ridge * 4)
    roofs = _roof_lines(peaks, lo, hi, multi_machine)
    if not roofs:
        return []
    tips = [
        alt.Tooltip("roof:N", title="roof"),
        _tip("peak_tflops", "peak TFLOP/s"),
        _tip("bandwidth_gb_s", "bandwidth (GB/s)"),
    ]
    line = alt.Chart(alt.Data(values=roofs)).mark_line(color="#444")
    strokes = alt.StrokeDash("roof:N", title="measured roof")
    return [line.encode(x=alt.X("arithmetic_intensity:Q"), y=alt.Y("tflops:Q"), strokeDash=strokes, tooltip=tips)]


def roofline(cells, meta):
    reason = "No roofline: the cells have no arithmetic intensity or achieved FLOP/s (FLOP counts missing)."
    d, note = _need(cells, ["arithmetic_intensity", "achieved_tflops"], reason)
    peaks = [p for p in meta.get("peaks") or [] if p.get("peak_tflops")]
    description = "Achieved TFLOP/s against arithmetic intensity (FLOP per byte moved), both log scales"
    description += (
        "; lines: the measured peak (compute roof) and bandwidth slope per device and precision."
        if peaks
        else "; no measured peaks were recorded, so no roof is drawn."
    )
    c = Chart("roofline", "Roofline", description, note=note)
    if note:
        return c
    d = d.filter((pl.col("arithmetic_intensity") > 0) & (pl.col("achieved_tflops") > 0))
    if d.height == 0:
        c.note = "No roofline: no cell has a positive arithmetic intensity and achieved FLOP/s."
        return c
    x = alt.X("arithmetic_intensity:Q", title="arithmetic intensity (FLOP/byte)", scale=alt.Scale(type="log"))
    y = alt.Y("achieved_tflops:Q", title="TFLOP/s", scale=alt.Scale(type="log"))
    tips = CELL_TIPS + [
        _tip("arithmetic_intensity", "FLOP/byte"),
        _tip("achieved_tflops", "achieved TFLOP/s"),
        _tip("utilization_pct", "utilisation (%)", ".2f"),
    ]
    data = _values(d, TIP_COLUMNS + ["arithmetic_intensity", "achieved_tflops", "utilization_pct"])
    dots = _points(alt.Chart(data), x=x, y=y, color=_color(), tooltip=tips, **_machine(d, "shape"))
    c.chart = (
        alt.layer(*_roofs(d, peaks, several_machines(cells)), dots)
        .properties(width=WIDE, height=360)
        .resolve_scale(strokeDash="independent", stroke="independent")
    )
    return c


def energy(cells):
    description = "Millijoules per image from NVML power sampling during the timed region, one panel per image size."
    c = Chart("energy", "Energy per image", description)
    gpu = cells.filter(pl.col("device") != "cpu").height > 0
    reason = "No energy figures: NVML figures absent on the GPU cells." if gpu else NO_GPU
    y = alt.Y("energy_mj_per_image:Q", title="energy per image (mJ)")
    tips = CELL_TIPS + [
        _tip("energy_mj_per_image", "mJ per image"),
        _tip("power_w", "power (W)"),
        _tip("gpu_util_pct", "GPU utilisation (%)"),
    ]
    columns = ["energy_mj_per_image", "power_w", "gpu_util_pct"]
    return _line_chart(c, cells, ["energy_mj_per_image"], reason, y, tips, columns)


NO_GPU = "No GPU cells: NVML figures (power, energy) absent."


def build_charts(summary: pl.DataFrame, meta: dict) -> list[Chart]:
    """Every chart of the report, in page order: every measured cell (ok and noisy alike)."""
    df = complete(summary)
    cells = with_intervals(with_series(measured_cells(df), several_machines(df)))
    return [
        throughput_vs_size(cells),
        throughput_vs_batch(cells),
        speedup(cells, meta),
        time_per_image(cells),
        latency(cells),
        heatmaps(cells),
        accuracy_vs_throughput(cells, meta),
        *([models_accuracy_vs_throughput(cells, meta)] if several_models(cells) else []),
        utilization(cells),
        memory(cells),
        roofline(cells, meta),
        energy(cells),
    ]
