"""The report's Serving section (README "Serving"): per variant the Offline throughput, the highest Server rate
whose p99 stays within the bound with its latencies, the SingleStream p90; a chart of p99 latency against offered
load per variant (every Server run of every repetition); findings with ratios.

`section(results)` is the only entry (report/build.py places its HTML and exports its chart with the others,
as plots/serving-p99.svg|png). No serving results: no section.
"""

from __future__ import annotations

import html
from pathlib import Path

import altair as alt

from infbench.core.io import read_json
from infbench.measure import statistics as st
from infbench.report.charts import Chart
from infbench.report.frame import num, plus_minus

CHART = "serving-p99"
COLUMNS = {
    "variant": "Variant",
    "requests": "Requests in flight",
    "offline": "Offline (samples/s)",
    "server": "Server: rate with p99 ≤ bound",
    "p50": "p50 at that rate",
    "p90": "p90",
    "p99": "p99",
    "single": "SingleStream p90",
    "notes": "Notes",
}
ABOUT = (
    "How many requests per second each variant answers within a latency bound, measured by MLPerf's LoadGen with "
    "several requests in flight. Offline queues every sample at once (throughput); Server sends Poisson arrivals "
    "at a target rate and the figure is the highest rate whose p99 latency stays within the bound (a bisection "
    "over short LoadGen runs; latencies in ms at that rate); SingleStream sends one query at a time (p90 latency). "
    "Short runs, not MLPerf-compliant ones; each figure is the median of fresh-process repetitions ± the "
    "order-statistic interval of that median (for 3 repetitions their range, a 75% interval). "
    "LoadGen's summary and detail logs lie beside each result (serving/…/<scenario>.loadgen/)."
)


def variant(r: dict) -> str:
    return f"{r['backend']} {r['precision']} {r['device']} {r['image_size']}px"


def figure_text(r: dict | None, key: str = "figure", unit: str = "") -> str:
    if r is None:
        return "not run"
    if r["status"] != "ok":
        return {"unmet": "bound not met", "unavailable": "unavailable"}.get(r["status"], r["status"])
    f = r[key] if key in ("figure", "samples_per_s") else r["latency_ms"][key]
    pct = None if f["uncertainty_rel"] is None else 100 * f["uncertainty_rel"]
    return plus_minus(f["value"], pct, unit, (f["min"], f["max"]))


def in_flight(runner: dict) -> str:
    """'4 (2 streams)' for OpenVINO's queue, '1 (one at a time, 2 CPU threads)' for SingleStream's,
    '2 (threads, 1 thread each)' for the rest."""
    if "streams" in runner:
        return f"{runner['requests_in_flight']} ({runner['streams']} stream{'' if runner['streams'] == 1 else 's'})"
    each = runner.get("threads_per_request")
    if runner.get("how", "").startswith("one query at a time"):
        return f"1 (one at a time, {each} CPU thread{'' if each == 1 else 's'})"
    return f"{runner['requests_in_flight']} (threads, {each} CPU thread{'' if each == 1 else 's'} each)"


def rows(results: list[dict]) -> list[dict]:
    by_variant: dict[str, dict] = {}
    for r in results:
        by_variant.setdefault(variant(r), {})[r["scenario"]] = r
    out = []
    for name, scenarios in sorted(by_variant.items()):
        offline, server, single = (scenarios.get(s) for s in ("Offline", "Server", "SingleStream"))
        running = next((r for r in (offline, server, single) if r and r.get("runner")), None)
        notes = [
            f"{s}: {r.get('note') or r.get('error')}" for s, r in scenarios.items() if r.get("note") or r.get("error")
        ]
        out.append(
            {
                "variant": name,
                "requests": in_flight(running["runner"]) if running else None,
                "offline": figure_text(offline, unit="samples/s"),
                "server": figure_text(server, unit="req/s"),
                "p50": figure_text(server, "p50_ms", "ms") if server and server["status"] == "ok" else "",
                "p90": figure_text(server, "p90_ms", "ms") if server and server["status"] == "ok" else "",
                "p99": figure_text(server, "p99_ms", "ms") if server and server["status"] == "ok" else "",
                "single": figure_text(single, unit="ms"),
                "notes": "; ".join(notes),
            }
        )
    return out


def load_points(results: list[dict]) -> list[dict]:
    """Every Server run: offered load, p99, whether it met the bound."""
    return [
        {
            "variant": variant(r),
            "offered": run["target_rate"],
            "p99_ms": run["p99_ms"],
            "within": "within the bound" if run["within_bound"] else "above the bound",
            "repetition": k,
        }
        for r in results
        if r["scenario"] == "Server"
        for k, rep in enumerate(r.get("repetitions") or [], 1)
        for run in rep.get("runs", [])
    ]


def chart(results: list[dict]) -> Chart:
    points = load_points(results)
    title = "p99 latency against offered load (Server)"
    bounds = sorted({r["settings"]["bound_ms"] for r in results if r["scenario"] == "Server"})
    about = f"Every Server run of every repetition; the dashed line is the bound ({', '.join(map(num, bounds))} ms)."
    if not points:
        return Chart(CHART, title, about, note="No Server runs.")
    data = alt.Data(values=points)
    base = alt.Chart(data).encode(
        x=alt.X("offered:Q", title="offered load (requests/s)"),
        y=alt.Y("p99_ms:Q", title="p99 latency (ms)", scale=alt.Scale(type="log")),
        color=alt.Color("variant:N", title="variant"),
    )
    marks = base.mark_point(filled=True).encode(
        shape=alt.Shape("within:N", title="p99"),
        tooltip=[
            "variant:N",
            alt.Tooltip("offered:Q", format=",.1f"),
            alt.Tooltip("p99_ms:Q", format=".2f"),
            "within:N",
            "repetition:Q",
        ],
    )
    lines = base.mark_line(opacity=0.35).encode(detail="repetition:N", order="offered:Q")
    rule = alt.Chart(alt.Data(values=[{"bound": b} for b in bounds])).mark_rule(strokeDash=[4, 4]).encode(y="bound:Q")
    return Chart(CHART, title, about, (lines + marks + rule).properties(width=640, height=320))


def ranked(results: list[dict], scenario: str, higher_better: bool) -> list[dict]:
    ok = [r for r in results if r["scenario"] == scenario and r["status"] == "ok"]
    return sorted(ok, key=lambda r: r["figure"]["value"], reverse=higher_better)


def findings(results: list[dict], tolerance: float = st.DEFAULT_TOLERANCE) -> list[tuple[str, bool]]:
    """(sentence, decided): the best variant of each scenario against the next, decided like every finding
    (measure/statistics.compare: the ratio of their medians with the interval of the repetitions' pairwise
    ratios, and a verdict against the margin: the larger of `bench.tolerance` and the scenario's drift, the
    typical interval of its cells, as the benchmark cells' findings take the run's)."""
    out = []
    bound = next((r["settings"]["bound_ms"] for r in results if r["scenario"] == "Server"), None)
    what = {
        "Server": (f"Most requests per second with p99 ≤ {num(bound)} ms", True, "req/s", "faster"),
        "Offline": ("Most samples per second, everything queued (Offline)", True, "samples/s", "faster"),
        "SingleStream": ("Lowest p90 latency, one query at a time (SingleStream)", False, "ms", "quicker"),
    }
    for scenario, (lead, higher, unit, better) in what.items():
        order = ranked(results, scenario, higher)
        if not order:
            continue
        margin = st.margin_of(tolerance, st.drift_floor([r["figure"]["repetitions"] for r in order]))
        best = order[0]
        text = f"{lead}: {variant(best)}, {in_flight(best['runner'])} in flight: {figure_text(best, unit=unit)}"
        decided = True
        if len(order) > 1:
            second = order[1]
            c = st.compare(best["figure"]["repetitions"], second["figure"]["repetitions"], margin, higher)
            text += "; " + c.text(variant(best), variant(second), better)
            decided = c.decided
        out.append((text, decided))
    unmet = [variant(r) for r in results if r["scenario"] == "Server" and r["status"] == "unmet"]
    if unmet:
        out.append((f"No rate tried kept p99 within {num(bound)} ms for: {', '.join(unmet)}", True))
    return out


def section(
    paths: list[Path], chart_section, html_table, tolerance: float = st.DEFAULT_TOLERANCE
) -> tuple[list[Chart], str]:
    """The Serving section: its chart (exported with the others) and its HTML; nothing without results.
    `chart_section` and `html_table` are report/build.py's, which calls this (passed in: no import circle)."""
    if not paths:
        return [], ""
    results = [read_json(p) for p in paths]
    c = chart(results)
    specs: list[str] = []
    chart_html = chart_section(c, specs)
    found = "\n".join(
        f'<li class="{"" if ok else "undetermined"}">{html.escape(text)}</li>'
        for text, ok in findings(results, tolerance)
    )
    return (
        [c],
        f"""<h2 id="serving">Serving</h2>
<p class="muted reading">{html.escape(ABOUT)}</p>
<ul class="findings serving-findings">
{found}
</ul>
{html_table(rows(results), COLUMNS, "serving-table")}
{chart_html}
{"".join(specs)}""",
    )
