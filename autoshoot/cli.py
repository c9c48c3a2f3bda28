"""The command line: a thin click layer over the library.

Sub-commands live in ``autoshoot/commands/<name>.py`` and are imported only when invoked, so
``autoshoot --help`` stays fast and never imports torch.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from autoshoot import __version__

COMMANDS = {
    "shoot": ("autoshoot.commands.shoot:shoot", "Run a catalog: brief, geometry, render, score, report."),
    "validate": ("autoshoot.commands.validate:validate", "Check a catalog CSV without loading any model."),
    "analyze": ("autoshoot.commands.analyze:analyze", "Write the brief and prompts for one product photo."),
    "prepare": ("autoshoot.commands.prepare:prepare", "Segment, find the handle, erase the grip gap, place."),
    "score": ("autoshoot.commands.score:score", "Score the hands in images (JSON with --json)."),
    "hands": (
        "autoshoot.commands.hands:hands",
        "Detected and corrected hand landmarks (and stage-2 guidance).",
    ),
    "models": ("autoshoot.commands.models:models", "List, download or check the models of a profile."),
    "review": ("autoshoot.commands.review:review", "Review a RUN in the browser: approve, pick or reject."),
    "export": ("autoshoot.commands.export:export", "Write a RUN's approved pictures and a manifest."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target = COMMANDS[name][0]
        module_name, _, attr = target.partition(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table above: listing commands must not import them.
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autoshoot")
@click.option("-v", "--verbose", count=True, help="Log progress (-v) or everything (-vv) to stderr.")
def main(verbose: int) -> None:
    """autoshoot: one product photo in, ranked photos of a model holding it out."""
    configure_logging(verbose)


def configure_logging(verbose: int) -> None:
    """-v: autoshoot's INFO logs on stderr; -vv: DEBUG, and the model libraries' own output."""
    if verbose < 2:
        quiet_libraries()
    else:
        os.environ["AUTOSHOOT_NATIVE_LOGS"] = "1"
    if verbose:
        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        logging.getLogger().setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def quiet_libraries() -> None:
    """Keep the model libraries' own chatter (casting notes, absl/TFLite logs) off stderr.

    Environment variables, because the libraries are imported later, inside the backends;
    anything the user set explicitly wins. ``-vv`` leaves them alone.
    """
    for key, value in {
        "TRANSFORMERS_VERBOSITY": "error",
        "DIFFUSERS_VERBOSITY": "error",
        "GLOG_minloglevel": "2",  # MediaPipe's C++ logging
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TOKENIZERS_PARALLELISM": "false",
    }.items():
        os.environ.setdefault(key, value)


def run_main() -> None:
    """Console-script entry: library errors become one message and exit code 2."""
    from autoshoot.errors import AutoshootError
    from autoshoot.io import filter_native_stderr

    if verbosity(sys.argv[1:]) < 2:
        filter_native_stderr()  # MediaPipe's start-up notes, even with -q
    try:
        main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except AutoshootError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)


def verbosity(argv: list[str]) -> int:
    """The count of -v given before the command (``-vv``, ``-v -v``, ``--verbose``)."""
    count = 0
    for arg in argv:
        if not arg.startswith("-"):
            break
        count += 1 if arg == "--verbose" else arg.count("v") if arg.strip("-v") == "" else 0
    return count
