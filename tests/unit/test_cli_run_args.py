"""``cpagent run``, the agent's start, reads its command line as the full parser does, without
building it; every other command line still goes to the full parser."""

from __future__ import annotations

import pytest

from cpagent.cli import _run_args, build_parser


@pytest.mark.parametrize(
    "argv",
    [
        ["run"],
        ["run", "--config", "/etc/cpagent/cpagent.toml"],
        ["run", "--config", "relative.toml"],
        ["run", "--config=/tmp/with space.toml"],
        ["run", "--config="],
        ["run", "--config=-dash.toml"],
    ],
)
def test_the_start_reads_its_command_line_as_the_full_parser(argv: list[str]) -> None:
    ours = _run_args(argv)
    assert ours is not None
    assert vars(ours) == vars(build_parser().parse_args(argv))


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["status"],
        ["check-config", "--config", "x.toml"],
        ["run", "--conf", "x.toml"],
        ["run", "--config"],
        ["run", "--config", "-"],
        ["run", "--config", "a.toml", "b.toml"],
        ["run", "-h"],
        ["run", "--version"],
        ["run", "--bogus"],
    ],
)
def test_any_other_command_line_goes_to_the_full_parser(argv: list[str]) -> None:
    assert _run_args(argv) is None
