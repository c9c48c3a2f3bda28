"""Atomic file writes: a temp file in the same folder, fsync, then ``os.replace``.

A reader (or a rerun after SIGKILL) sees either the old file or the complete new one, never
a partial one. Temp files are named ``.<name>.tmp-<random>`` so that cleanup can find them.

``tempfile`` makes its files 0600 and its folders 0700 whatever the umask; the renamed result
would keep that, so a teammate or a web server could not read a report. Files and folders made
here get the modes the umask gives ordinary ones (0644 and 0755 under umask 022).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it straight back
    os.umask(mask)
    return mask


def honour_umask(path: str | os.PathLike[str], folder: bool = False) -> None:
    """Give a ``tempfile`` file or folder the mode an ordinary one would get."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


def make_temp_dir(prefix: str, parent: Path) -> Path:
    """``tempfile.mkdtemp`` in ``parent``, with the umask's mode (it will be renamed into place)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    honour_umask(path, folder=True)
    return path


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and then move the temp file onto ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent, suffix=path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        honour_umask(tmp_path)
        write(tmp_path)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def save_image(path: Path, image: Any, fast: bool = False) -> Path:
    """Save a PIL image or an HxW / HxWx3 uint8 array atomically (format from the suffix).

    ``fast``: a PNG at zlib level 1, for the pictures the run reads back or shows in its report
    (stage 1's candidates, the refined ones, the overlays): about 2x quicker to write than
    Pillow's default level 6 for about 10% more bytes, and the same pixels."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}[Path(path).suffix.lower()]
    options = {"compress_level": 1} if fast and fmt == "PNG" else {}
    return atomic_write(path, lambda p: image.save(p, format=fmt, **options))


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@contextmanager
def native_stderr_silenced():  # type: ignore[no-untyped-def]
    """Silence what native libraries (MediaPipe's absl/TFLite) write straight to fd 2.

    Python-level messages are unaffected once the block ends. ``autoshoot -vv`` sets
    AUTOSHOOT_NATIVE_LOGS=1, which keeps them.
    """
    if os.environ.get("AUTOSHOOT_NATIVE_LOGS") == "1":
        yield
        return
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# What native libraries print straight to fd 2 that says nothing to a user (MediaPipe's absl and
# TFLite start-up notes). GLOG_minloglevel no longer reaches MediaPipe 0.10's absl logging, and
# its graph threads write these lines at any time, so they are filtered where they arrive.
NATIVE_NOISE = re.compile(
    rb"inference_feedback_manager\.cc:\d+\] Feedback manager requires"
    rb"|All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|Created TensorFlow Lite XNNPACK delegate for CPU"
)


def filter_native_stderr() -> bool:
    """Send fd 2 through a filter that drops ``NATIVE_NOISE`` lines; True when installed.

    Python's own ``sys.stderr`` (messages, progress bars, tracebacks) moves to a copy of the
    original stream, so it never waits on the filter; only what native code writes to fd 2
    passes through it. For the console command only (``autoshoot -vv`` leaves fd 2 alone).
    """
    import sys
    import threading

    try:
        sys.stderr.flush()
        terminal = os.dup(2)
        read_end, write_end = os.pipe()
    except (OSError, AttributeError, ValueError):
        return False
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = open(  # noqa: SIM115 - the process's stderr from now on
        terminal, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
    )
    forwarder = threading.Thread(target=_forward_native, args=(read_end, terminal), daemon=True)
    forwarder.start()

    def drain() -> None:  # at exit: end the pipe, let the last native lines through
        os.dup2(terminal, 2)
        forwarder.join(timeout=2.0)

    import atexit

    atexit.register(drain)
    return True


def _forward_native(read_end: int, terminal: int) -> None:
    """Copy whole lines from the pipe to the terminal, without the noise (a native library may
    write one line in several pieces, so an unfinished line waits for its end)."""
    pending = b""
    while True:
        try:
            data = os.read(read_end, 65536)
        except OSError:
            data = b""
        lines = (pending + data).splitlines(keepends=True)
        pending = lines.pop() if data and lines and not lines[-1].endswith((b"\n", b"\r")) else b""
        keep_all = os.environ.get("AUTOSHOOT_NATIVE_LOGS") == "1"  # shoot -vv
        kept = b"".join(line for line in lines if keep_all or not NATIVE_NOISE.search(line))
        try:
            if kept:
                os.write(terminal, kept)
        except OSError:
            return
        if not data:
            return
