"""``autoshoot review RUN``: serve the report on this machine and record decisions."""

from __future__ import annotations

import getpass
from pathlib import Path

import click


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", default=8765, show_default=True, help="The port (0: any free one).")
@click.option(
    "--reviewer", default=None, help="Who decides (default: your user name); the page can change it."
)
@click.option(
    "--allow",
    multiple=True,
    metavar="ADDRESS",
    help="Also serve requests from this client address (repeatable); others are refused.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
def review(
    run: str, host: str, port: int, reviewer: str | None, allow: tuple[str, ...], open_browser: bool
) -> None:
    """Review RUN in the browser: approve the best pick, pick another candidate, or reject with a reason.

    Decisions are saved in RUN/decisions.csv (who and when) as they are made; the next run
    beside RUN honours them. Keys: j/k move, a approve, 1-9 pick, r then 1-9 reject. Ctrl-C stops.
    """
    from autoshoot.errors import AutoshootError
    from autoshoot.report.review.runview import check_run_folder
    from autoshoot.report.review.server import ReviewServer

    run_dir = Path(run)
    check_run_folder(run_dir)
    try:
        server = ReviewServer(run_dir, host, port, reviewer or default_reviewer(), allow)
    except OSError as err:
        raise AutoshootError(
            f"cannot listen on {host}:{port} ({err.strerror}); pass another --port"
        ) from None
    except ValueError as err:
        raise AutoshootError(f"--allow: {err}") from None
    click.echo(f"Reviewing {run_dir} at {server.url}  (decisions: {run_dir / 'decisions.csv'}; Ctrl-C stops)")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    import signal

    # Ctrl-C stops it also when it was started with SIGINT ignored (a background job, nohup)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    finally:
        server.server_close()


def default_reviewer() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        return "reviewer"
