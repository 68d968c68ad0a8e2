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


def test_the_examples_in_the_help_parse():
    """Every ``perdure ...`` example a ``--help`` prints is a valid command line."""
    from tests.docs.harness import parse_command, perdure_args

    examples = [cli.epilog or ""] + [cli.commands[name].epilog or "" for name in COMMANDS]
    checked = 0
    for text in examples:
        for line in text.splitlines():
            for part in line.strip().split(" | "):
                part = part.split(" > ")[0]
                args = perdure_args(part) if "perdure " in part else None
                if args is not None:
                    parse_command(args)
                    checked += 1
    assert checked >= 2 * len(COMMANDS)
