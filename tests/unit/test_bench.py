"""benchmarks/bench.py, the ``make bench`` table: reading each script's JSON line, judging a
figure against its goal, carrying on past a missing or failing script, and the baseline."""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def write_script(directory: Path, name: str, body: str) -> None:
    (directory / name).write_text(textwrap.dedent(body))


def test_the_last_line_is_the_json_object(bench: ModuleType) -> None:
    out = 'human readable\n{"not": "this one"}\n{"a_ms": 1.5, "n": 3, "ok": true, "s": "x"}\n\n'
    assert bench.last_json_line(out) == {"a_ms": 1.5, "n": 3.0}
    for bad in ("", "figures: 1.5\n", "[1, 2]\n"):
        with pytest.raises(ValueError):
            bench.last_json_line(bad)


def test_goals_compare_both_ways(bench: ModuleType) -> None:
    lower = bench.Figure("t", "s.py", ("t_ms",), "ms", 200, "<=")
    higher = bench.Figure("r", "s.py", ("r_per_s",), "msg/s", 2000, ">=")
    free = bench.Figure("p", "s.py", ("p_mb",), "MB")
    assert bench.meets(lower, 200) and not bench.meets(lower, 200.1)
    assert bench.meets(higher, 2000) and not bench.meets(higher, 1999)
    assert bench.meets(free, 1e9)
    assert bench.Result(lower, 150.0).verdict == "ok"
    assert bench.Result(higher, 1500.0).verdict == "MISS"
    assert bench.Result(free, 30.0).verdict == ""


def test_missing_failing_and_keyless_scripts_are_not_measured(
    bench: ModuleType, tmp_path: Path
) -> None:
    write_script(
        tmp_path,
        "good.py",
        """
        import json, sys
        assert sys.argv[1] == "--json", sys.argv
        print("warming up")
        print(json.dumps({"old_name_ms": 120.0, "args": len(sys.argv)}))
        """,
    )
    write_script(
        tmp_path,
        "nojson.py",
        """
        import argparse
        argparse.ArgumentParser().parse_args()
        """,
    )
    figures = (
        bench.Figure("good", "good.py", ("new_name_ms", "old_name_ms"), "ms", 100, "<="),
        bench.Figure("keyless", "good.py", ("absent_ms",), "ms", 1, "<=", args=("--x",)),
        bench.Figure("old script", "nojson.py", ("a_ms",), "ms", 1, "<="),
        bench.Figure("not written yet", "missing.py", ("b_ms",), "ms", 1, "<="),
    )
    results = bench.measure(figures, scripts=tmp_path, ocpp="2.0.1")
    good, keyless, old, missing = results
    assert (good.value, good.verdict) == (120.0, "MISS")
    assert keyless.value is None and "gave no absent_ms" in keyless.reason
    assert old.value is None and "exited with 2" in old.reason and "--json" in old.reason
    assert missing.value is None and "missing.py does not exist" in missing.reason

    shown = bench.table(results, {"new_name_ms": 100.0}, "0.1.0, 2026-12-07")
    assert "120 ms" in shown and "<= 100 ms" in shown and "+20%, REGRESSED" in shown
    assert shown.count("not measured") == 4  # three rows, and the heading of the reasons
    assert "missing.py does not exist" in shown


def test_a_change_is_flagged_only_in_the_wrong_direction(bench: ModuleType) -> None:
    rate = bench.Figure("r", "s.py", ("r_per_s",), "msg/s", 2000, ">=")
    assert bench.change(rate, 2100.0, 895.0) == "895 (+135%)"
    assert bench.change(rate, 700.0, 895.0) == "895 (-22%, REGRESSED)"
    assert bench.change(rate, 700.0, None) == "-"


def test_saved_baseline_is_read_back_per_ocpp_version(bench: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"1.6": {"version": "0.1.0", "date": "d", "figures": {"a": 1}}}))
    figure = bench.Figure("a", "s.py", ("a",), "ms", 2, "<=")
    unmeasured = bench.Figure("b", "s.py", ("b",), "ms", 2, "<=")
    saved = bench.save_baseline(
        path, "2.0.1", [bench.Result(figure, 1.5), bench.Result(unmeasured, None, "why")], "0.2.0"
    )
    assert saved == ["a"]
    label, figures = bench.load_baseline(path, "2.0.1")
    assert label.startswith("0.2.0, ") and figures == {"a": 1.5}
    assert bench.load_baseline(path, "1.6") == ("0.1.0, d", {"a": 1.0})
    assert bench.load_baseline(tmp_path / "none.json", "1.6") == ("none kept", {})


def test_the_kept_baseline_and_figures_agree(bench: ModuleType) -> None:
    """Every figure kept as the previous release's is one a row of the table shows."""
    keys = {figure.key for figure in bench.FIGURES}
    kept = json.loads(bench.BASELINE.read_text())
    for ocpp in ("1.6", "2.0.1"):
        label, figures = bench.load_baseline(bench.BASELINE, ocpp)
        assert label != "none kept" and kept[ocpp]["version"]
        assert set(figures) <= keys, set(figures) - keys
