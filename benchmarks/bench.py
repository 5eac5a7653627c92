"""The performance figures in one table, each beside its goal and the previous release's.

Runs each benchmark script below once with ``--json`` (one subprocess each, so their imports
do not mix and one script's failure does not stop the others), reads the JSON object on the
last line of its output, and prints one row per figure: the value, the goal, ok or miss,
and the figure kept for the previous release in ``benchmarks/baseline.json`` with the
change against it. A row whose script is missing, fails, prints no JSON or lacks the key is
shown as not measured, with the reason.

    python benchmarks/bench.py [--quick] [--ocpp 1.6|2.0.1] [--save-baseline]

``--quick`` gives each script fewer runs and shorter windows (a fast look; noisier).
``--save-baseline`` writes the figures measured now to ``baseline.json`` as the release in
pyproject.toml, for that OCPP version; figures not measured now keep no entry.
The figures are timings on a shared machine: compare runs, never assert on them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline.json"
PYPROJECT = HERE.parent / "pyproject.toml"
SCRIPT_TIMEOUT_S = 1200.0
REGRESSION = 0.10
"""A change beyond this fraction in the wrong direction is flagged as a regression."""


@dataclass(frozen=True)
class Figure:
    """One row: the figure ``keys[0]`` (or the first of the other ``keys`` present: a name
    the script used before, or the other OCPP version's) of ``script``'s JSON output."""

    label: str
    script: str
    keys: tuple[str, ...]
    unit: str
    goal: float | None = None
    comparison: str = "<="
    """How the value must relate to the goal: ``<=`` (lower is better) or ``>=``."""
    quick_args: tuple[str, ...] = ()
    args: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.keys[0]

    @property
    def lower_is_better(self) -> bool:
        return self.comparison == "<="


FIGURES: tuple[Figure, ...] = (
    Figure(
        "start -> BootNotification, median",
        "startup.py",
        ("startup_median_ms",),
        "ms",
        200,
        "<=",
        quick_args=("--runs", "3"),
    ),
    Figure(
        "idle RSS, 2 connectors",
        "idle.py",
        ("idle_rss_mb", "idle_rss_median_mb"),
        "MB",
        32,
        "<=",
        quick_args=("--seconds", "20"),
    ),
    Figure("idle PSS, 2 connectors", "idle.py", ("idle_pss_mb", "idle_pss_median_mb"), "MB"),
    Figure("idle CPU", "idle.py", ("idle_cpu_s_per_h",), "CPU-s/h", 0.3, "<="),
    Figure(
        "GetConfiguration all keys, median",
        "requests.py",
        ("getconfiguration_all_median_ms", "getvariables_all_median_ms"),
        "ms",
        0.5,
        "<=",
        quick_args=("--calls", "100", "--warmup", "20", "--rounds", "10"),
    ),
    Figure(
        "GetConfiguration all keys, p99",
        "requests.py",
        ("getconfiguration_all_p99_ms", "getvariables_all_p99_ms"),
        "ms",
        1.5,
        "<=",
    ),
    Figure(
        "GetConfiguration 1 key, median",
        "requests.py",
        ("getconfiguration_one_median_ms", "getvariables_one_median_ms"),
        "ms",
        0.5,
        "<=",
    ),
    Figure(
        "RemoteStart -> StartTransaction.req, median",
        "requests.py",
        ("remote_start_median_ms",),
        "ms",
        2.5,
        "<=",
    ),
    Figure(
        "offline replay to a validating CSMS",
        "replay.py",
        ("replay_msg_per_s",),
        "msg/s",
        2000,
        ">=",
        quick_args=("--enqueues", "500", "--messages", "3000"),
    ),
    Figure("durable enqueue, mean", "replay.py", ("enqueue_mean_ms",), "ms", 2.0, "<="),
)


@dataclass
class Run:
    """What one script gave: its figures, or why it gave none."""

    figures: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Result:
    figure: Figure
    value: float | None
    reason: str | None = None
    """Why ``value`` is None."""

    @property
    def verdict(self) -> str:
        if self.value is None or self.figure.goal is None:
            return ""
        return "ok" if meets(self.figure, self.value) else "MISS"


def meets(figure: Figure, value: float) -> bool:
    """Whether ``value`` reaches the figure's goal (a figure without one always does)."""
    if figure.goal is None:
        return True
    if figure.comparison == "<=":
        return value <= figure.goal
    if figure.comparison == ">=":
        return value >= figure.goal
    raise ValueError(f"{figure.label}: unknown comparison {figure.comparison!r}")


def last_json_line(stdout: str) -> dict[str, float]:
    """The JSON object on the last non-empty line of ``stdout``, its numbers only.

    Raises:
        ValueError: that line is missing or no JSON object.
    """
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("no output")
    try:
        found = json.loads(lines[-1])
    except ValueError:
        raise ValueError(f"last line is no JSON: {lines[-1][:80]!r}") from None
    if not isinstance(found, dict):
        raise ValueError("last line is JSON but no object")
    return {
        str(k): float(v)
        for k, v in found.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def run_script(script: Path, args: Sequence[str], *, timeout: float = SCRIPT_TIMEOUT_S) -> Run:
    """Run ``script --json args`` with this interpreter; never raises for its failures."""
    if not script.is_file():
        return Run(error=f"{script.name} does not exist")
    command = [sys.executable, str(script), "--json", *args]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=script.parent
        )
    except subprocess.TimeoutExpired:
        return Run(error=f"{script.name} took over {timeout:.0f} s")
    if done.returncode != 0:
        tail = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["no stderr"]
        return Run(error=f"{script.name} exited with {done.returncode}: {tail[0][:120]}")
    try:
        return Run(figures=last_json_line(done.stdout))
    except ValueError as exc:
        return Run(error=f"{script.name} --json: {exc}")


def measure(
    figures: Sequence[Figure],
    *,
    scripts: Path = HERE,
    quick: bool = False,
    ocpp: str | None = None,
    progress: bool = False,
) -> list[Result]:
    """Each script once (in the order of its first figure), then a result per figure."""
    runs: dict[str, Run] = {}
    for figure in figures:
        if figure.script in runs:
            continue
        args: list[str] = []
        for same in figures:
            if same.script == figure.script:
                args += [*same.args, *(same.quick_args if quick else ())]
        if ocpp is not None:
            args += ["--ocpp", ocpp]
        if progress:
            print(f"running {figure.script} {' '.join(args)}", file=sys.stderr, flush=True)
        runs[figure.script] = run_script(scripts / figure.script, args)
    results = []
    for figure in figures:
        run = runs[figure.script]
        if run.error is not None:
            results.append(Result(figure, None, run.error))
            continue
        key = next((k for k in figure.keys if k in run.figures), None)
        if key is None:
            results.append(Result(figure, None, f"{figure.script} gave no {figure.key}"))
        else:
            results.append(Result(figure, run.figures[key]))
    return results


def load_baseline(path: Path, ocpp: str) -> tuple[str, dict[str, float]]:
    """``(label, figures)`` kept for the previous release and ``ocpp``; none when absent."""
    try:
        data = json.loads(path.read_text())
        entry = data[ocpp]
        label = f"{entry['version']}, {entry['date']}"
        return label, {str(k): float(v) for k, v in entry["figures"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return "none kept", {}


def save_baseline(path: Path, ocpp: str, results: Sequence[Result], version: str) -> list[str]:
    """Keep the measured figures as release ``version``'s for ``ocpp``; the keys saved."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    figures = {r.figure.key: r.value for r in results if r.value is not None}
    data[ocpp] = {
        "version": version,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "source": "benchmarks/bench.py --save-baseline",
        "figures": figures,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    return list(figures)


def project_version(pyproject: Path = PYPROJECT) -> str:
    with pyproject.open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def change(figure: Figure, value: float | None, before: float | None) -> str:
    """The previous figure and the change to ``value``; ``REGRESSED`` when it got worse by
    more than :data:`REGRESSION`."""
    if before is None:
        return "-"
    text = number(before)
    if value is None or before == 0:
        return text
    delta = (value - before) / before
    worse = delta > REGRESSION if figure.lower_is_better else delta < -REGRESSION
    return f"{text} ({delta:+.0%}{', REGRESSED' if worse else ''})"


def table(results: Sequence[Result], baseline: Mapping[str, float], previous: str) -> str:
    header = ("figure", "value", "goal", "ok/miss", f"previous release ({previous})")
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for r in results:
        f = r.figure
        goal = "-" if f.goal is None else f"{f.comparison} {number(f.goal)} {f.unit}"
        if r.value is None:
            value = "not measured"
            notes.append(f"{f.label}: {r.reason}")
        else:
            value = f"{number(r.value)} {f.unit}"
        rows.append((f.label, value, goal, r.verdict, change(f, r.value, baseline.get(f.key))))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, tuple("-" * w for w in widths), *rows)
    ]
    if notes:
        lines += ["", "not measured:", *(f"  {note}" for note in notes)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter windows")
    parser.add_argument("--ocpp", choices=["1.6", "2.0.1"], default="1.6")
    parser.add_argument(
        "--save-baseline", action="store_true", help=f"keep these figures in {BASELINE.name}"
    )
    args = parser.parse_args(argv)
    results = measure(FIGURES, quick=args.quick, ocpp=args.ocpp, progress=True)
    previous, baseline = load_baseline(BASELINE, args.ocpp)
    print(f"performance figures, OCPP {args.ocpp}{', quick' if args.quick else ''}")
    print(table(results, baseline, previous))
    if args.save_baseline:
        version = project_version()
        saved = save_baseline(BASELINE, args.ocpp, results, version)
        print(f"\nkept {len(saved)} figures in {BASELINE} as {version} (OCPP {args.ocpp})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
