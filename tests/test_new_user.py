"""What a new user meets first: commands that fail fast and say why, help text, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes import write_photo

REPO = Path(__file__).resolve().parents[1]


def autoshoot(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autoshoot", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("command", "model"),
    [
        (["analyze", "{image}"], "vlm (brief): Qwen/Qwen2.5-VL-7B-Instruct: not fetched: "),
        (
            ["score", "{image}"],
            "bag detector (scene: no second bag): google/owlv2-base-patch16-ensemble: not fetched: ",
        ),
        (
            ["prepare", "{image}", "--out", "{out}", "--segmenter", "birefnet"],
            "BiRefNet segmenter: ZhengPeng7/BiRefNet: not fetched: ",
        ),
    ],
)
def test_commands_without_the_hub_fail_fast_with_shoots_message(
    tmp_path: Path, command: list[str], model: str
) -> None:
    """No hub (a closed local port), downloads allowed: the model is fetched up front and the
    command stops in seconds with the missing-model message, instead of retrying for minutes."""
    image = write_photo(tmp_path / "bag.png")
    argv = [a.format(image=image, out=tmp_path / "prep") for a in command]
    start = time.perf_counter()
    proc = autoshoot(
        *argv, env={"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("Error: These models are missing, so nothing was run:\n  - " + model), (
        proc.stderr
    )
    assert "the Hugging Face hub cannot be reached (no network?)" in proc.stderr
    assert "Retrying" not in proc.stderr and "Traceback" not in proc.stderr
    assert seconds < 30


@pytest.mark.parametrize("command", ["analyze", "score", "prepare"])
def test_commands_that_load_models_take_offline(tmp_path: Path, command: str) -> None:
    image = write_photo(tmp_path / "bag.png")
    extra = ["--out", str(tmp_path / "prep"), "--segmenter", "birefnet"] if command == "prepare" else []
    proc = autoshoot(command, str(image), *extra, "--offline", env={"HF_HUB_OFFLINE": "0"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "not in the" in proc.stderr and "or run without --offline to let it download" in proc.stderr


def test_shoot_help_lists_every_exit_code() -> None:
    from click.testing import CliRunner

    from autoshoot.cli import main

    text = " ".join(CliRunner().invoke(main, ["shoot", "--help"]).output.split())
    assert (
        "Exit code 0 when every SKU is accepted or in review, 1 when any failed, 2 for a usage, catalog "
        "or config error or missing models (nothing is run), 130 when interrupted." in text
    )


def test_make_shoot_says_autoshoots_own_exit_code(tmp_path: Path) -> None:
    """make exits 2 for any failed recipe; `make shoot` says what autoshoot's own code was."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "bin" / "autoshoot").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m autoshoot "$@"\n')
    (venv / "bin" / "autoshoot").chmod(0o755)
    (venv / ".installed").touch()  # newer than pyproject.toml: nothing to install
    write_photo(tmp_path / "a.png")
    (tmp_path / "c.csv").write_text("sku,image\nA,missing.png\n")
    for catalog, code, meaning in [
        (tmp_path / "c.csv", 1, "some SKU failed"),
        (tmp_path / "none.csv", 2, "a usage, catalog or config error"),
    ]:
        proc = subprocess.run(
            [
                "make",
                "-s",
                "shoot",
                f"VENV={venv}",
                f"CATALOG={catalog}",
                f"OUT={tmp_path / 'run'}",
                "ARGS=-q --profile tiny",
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"autoshoot exited {code}: {meaning}" in proc.stderr
        assert f"Error {code}" in proc.stderr


NATIVE = r"""
import os, sys
from autoshoot.io import filter_native_stderr
assert filter_native_stderr()
os.write(2, b"INFO: ")
os.write(2, b"Created TensorFlow Lite XNNPACK delegate for CPU.\n")
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
os.write(2, b"W0000 00:00:1.5 17 inference_feedback_manager.cc:114] Feedback manager requires a model with a single signature inference. Disabling support for feedback tensors.\n")
os.write(2, b"E0000 a real native error\n")
print("from python", file=sys.stderr)
"""


def test_native_start_up_notes_are_filtered_from_stderr() -> None:
    """MediaPipe's absl/TFLite notes go; a native error and Python's own output stay."""
    proc = subprocess.run(
        [sys.executable, "-c", NATIVE], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stderr.splitlines()) == ["E0000 a real native error", "from python"]


def test_verbosity_counts_the_v_before_the_command() -> None:
    from autoshoot.cli import verbosity

    assert [
        verbosity(a) for a in (["shoot"], ["-v", "shoot"], ["-vv", "shoot"], ["-v", "--verbose", "x"])
    ] == [0, 1, 2, 2]
    assert verbosity(["shoot", "-vv"]) == 0  # shoot's own -v is not the group's
