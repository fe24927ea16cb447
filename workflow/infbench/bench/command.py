"""`infbench bench`: one repetition (a job of its own) or the whole cell, from the command line."""

from __future__ import annotations

from pathlib import Path

from infbench.backends.registry import spec
from infbench.bench.cell import run_cell
from infbench.bench.launch import record_repetition
from infbench.bench.repeat import load_repetitions
from infbench.bench.result import cell_line
from infbench.core import cpus
from infbench.core.arguments import paths, schema_default
from infbench.core.cell import Cell


def add_parser(sub) -> None:
    """`infbench bench` (its measuring processes hold a GPU on --device cuda)."""
    s = sub.add_parser("bench", help="measure one cell → result JSON (never fails for a failed measurement)")
    s.add_argument("--model", default=schema_default("model.name"))
    s.add_argument("--backend", required=True)
    s.add_argument("--precision", required=True)
    s.add_argument("--device", required=True)
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--batch", type=int, required=True)
    paths(s, "--artifact", "--out")
    s.add_argument("--reference", type=Path, required=True, help="inputs and fp32 logits (infbench reference)")
    s.add_argument("--threads", type=int, default=0, help="intra-op threads; 0 = every CPU the job may use")
    # The measurement protocol's settings: required, their defaults live in config/schema.yaml only.
    s.add_argument("--timeout", type=float, required=True, help="seconds a repetition may take")
    s.add_argument("--mode", required=True, choices=["device", "end_to_end"])
    s.add_argument("--warmup", type=float, required=True, help="warm-up budget per repetition, s")
    s.add_argument("--window", type=float, required=True, help="least duration of a throughput window, s")
    s.add_argument("--window-iterations", type=int, required=True)
    s.add_argument("--windows", type=int, required=True)
    s.add_argument("--latency", type=float, required=True, help="least duration of the latency phase, s")
    s.add_argument("--latency-iterations", type=int, required=True)
    s.add_argument("--energy-window", type=float, required=True, help="GPU energy window, s (0: none)")
    # How repetitions are judged: required unless --repetition (one repetition judges nothing).
    s.add_argument("--repetitions", type=int)
    s.add_argument("--max-extra-repetitions", type=int)
    s.add_argument("--tolerance", type=float)
    s.add_argument("--extra-budget", type=float, default=0, help="the run's seconds for adaptive repetitions")
    s.add_argument("--budget-ledger", type=Path, default=None, help="JSON ledger of that budget, shared by the run")
    s.add_argument("--canary-slowdown", type=float, help="canary/quiet time that marks disturbed")
    s.add_argument("--foreign-cores", type=float, help="other processes' cores that mark disturbed")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="backend setting")
    s.add_argument("--flops", type=Path, default=None, help="FLOP count of the model at this size (infbench flops)")
    s.add_argument("--probe", type=Path, default=None, help="hardware probe of the device (infbench probe)")
    s.add_argument("--repetition", type=int, default=None, help="measure only this repetition (1, 2, …) → --out")
    s.add_argument(
        "--repetition-results", type=Path, nargs="*", default=[], help="repetitions measured by earlier jobs"
    )
    # No GPU slot for the whole stage: the measuring process takes it (`hold_gpu`).
    s.set_defaults(func=_command)


# The bench settings (config key: flag) that only judge repetitions already measured: a cell's job takes
# them, a repetition's job does not, so changing one reruns the cells' jobs and not their repetitions
# (rules/common.smk's repetition_params, rules/bench.smk's command lines).
JUDGING = {
    "repetitions": "--repetitions",
    "max_extra_repetitions": "--max-extra-repetitions",
    "tolerance": "--tolerance",
    "extra_budget_s": "--extra-budget",
    "canary_slowdown": "--canary-slowdown",
    "foreign_cores": "--foreign-cores",
}


def _command(a) -> None:
    """`infbench bench`: one repetition (--repetition N) or the whole cell, from the command line."""
    missing = [flag for flag in JUDGING.values() if getattr(a, flag[2:].replace("-", "_")) is None]
    if missing and a.repetition is None:
        raise ValueError(f"bench needs {', '.join(missing)} (or --repetition N to measure one repetition)")
    cell = Cell(a.model, a.backend, a.precision, a.device, a.size, a.batch)
    args = measurement_args(a)
    if a.repetition is not None:  # one repetition, a job of its own
        rep = record_repetition(cell, args, a.repetition, a.out, a.timeout)
        print(f"{cell.key}: repetition {a.repetition}: {rep['status']}" + (f": {rep['error']}" if rep["error"] else ""))
        return
    earlier = load_repetitions(cell, a.repetition_results)
    print(cell_line(run_cell(cell, args, a.out, a.timeout, earlier=earlier)))


def measurement_args(a) -> dict:
    """What a measuring process needs, from the command line (the backend's options typed and checked)."""
    return {
        "artifact": str(a.artifact),
        "reference": str(a.reference),
        "threads": cpus.threads(a.threads),
        "mode": a.mode,
        "flops": str(a.flops) if a.flops else None,
        "probe": str(a.probe) if a.probe else None,
        "options": spec(a.backend).parse_options(a.option, a.device),
        "tolerance": a.tolerance,
        "extra_budget_s": a.extra_budget,
        "budget_ledger": str(a.budget_ledger) if a.budget_ledger else None,
        # …/repetitions/<backend>/<precision>/<device>/<size>x<batch>/<n>.json: the other cells' repetitions
        "repetitions_root": str(a.repetition_results[0].parents[4]) if a.repetition_results else None,
        "repetitions": {"repetitions": a.repetitions, "max_extra": a.max_extra_repetitions},
        "energy_window_s": a.energy_window,
        "interference": {"canary_slowdown": a.canary_slowdown, "foreign_cores": a.foreign_cores},
        "timing": {
            "warmup_s": a.warmup,
            "window_s": a.window,
            "window_iterations": a.window_iterations,
            "windows": a.windows,
            "latency_s": a.latency,
            "latency_iterations": a.latency_iterations,
        },
    }
