"""Every command's ``--help`` describes every option and shows an example."""

from __future__ import annotations

import pytest

from perdure.cli import cli

from .helpers import perdure as run

COMMANDS = sorted(cli.commands)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_a_description_and_the_command_an_example(name):
    command = cli.commands[name]
    assert command.help, name
    for param in command.params:
        if param.param_type_name == "option":
            assert getattr(param, "help", None), f"{name} {param.opts} has no help text"
    assert "Examples:" in (command.epilog or ""), name
    assert f"perdure {name}" in command.epilog


def test_help_runs_for_every_command():
    for name in COMMANDS:
        ran = run(name, "--help")
        assert ran.out.startswith(f"Usage: perdure {name} ") and "Examples:" in ran.out
