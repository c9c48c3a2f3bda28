"""Catalog validation: every problem named by row, column, value and fix."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import write_catalog, write_photo
from PIL import Image

from autoshoot.catalog import load_catalog, load_product_image
from autoshoot.errors import CatalogError


def test_valid_rows_are_hashed_and_sized(tmp_path: Path) -> None:
    write_photo(tmp_path / "a.jpg", (400, 300))
    csv = write_catalog(
        tmp_path, [{"sku": "A1", "image": "a.jpg", "title": "Tote", "seed": "7", "candidates": "3"}]
    )
    catalog = load_catalog(csv)
    (row,) = catalog.rows
    assert row.ok, row.errors
    assert row.image_path == tmp_path / "a.jpg"
    assert len(row.image_sha256) == 64
    assert row.image_size == (400, 300)
    assert (row.seed, row.candidates, row.title) == (7, 3, "Tote")


def test_missing_required_column_names_the_fix(tmp_path: Path) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text("sku,picture\nA,a.jpg\n")
    with pytest.raises(CatalogError) as err:
        load_catalog(csv)
    assert str(err.value) == (
        f"{csv}: the required column image is missing (the header has: sku, picture); "
        "fix: add a header row with at least: sku,image"
    )


def test_row_problems(tmp_path: Path) -> None:
    write_photo(tmp_path / "ok.jpg")
    write_photo(tmp_path / "small.png", (200, 500))
    (tmp_path / "corrupt.jpg").write_bytes(b"<html>this is an error page, not a photo</html>" * 10)
    full = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(full[: len(full) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    csv = write_catalog(
        tmp_path,
        [
            {"sku": "A", "image": "ok.jpg", "hold_pose": "juggling", "colour": "red"},
            {"sku": "A", "image": "ok.jpg"},
            {"sku": "", "image": "ok.jpg"},
            {"sku": "B", "image": "nope.jpg"},
            {"sku": "C", "image": "small.png"},
            {"sku": "D", "image": "corrupt.jpg"},
            {"sku": "E", "image": "cut.jpg"},
            {"sku": "F", "image": "empty.png"},
            {
                "sku": "G",
                "image": "ok.jpg",
                "shot": "selfie",
                "size_cm": "big",
                "candidates": "0",
                "seed": "x",
            },
            {"sku": "H", "image": "nope://host/x.jpg"},
        ],
    )
    catalog = load_catalog(csv)
    errors = {row.sku or "(empty)": row.errors for row in catalog.rows}
    assert catalog.warnings == [
        "column 'colour' is not a known column and is ignored; known columns are: sku, image, title, brand, "
        "notes, candidates, seed, category, handle, hold_pose, shot, persona, garments, setting, lighting, "
        "gaze, expression, size_cm"
    ]
    assert catalog.rows[0].errors == [
        "row 2, column hold_pose, value 'juggling': not an allowed value; fix: use one of: beside_hip, "
        "in_front, forearm_crook, raised_display, shoulder_strap, cradled, under_arm, or leave it empty"
    ]
    assert catalog.rows[1].errors == [
        "row 3, column sku, value 'A': duplicate SKU, already used on row 2; "
        "fix: give every row a unique SKU, or delete the duplicate row"
    ]
    assert errors["(empty)"] == [
        "row 4, column sku, value '': the SKU is empty; fix: give every row a unique SKU"
    ]
    assert errors["B"] == [
        f"row 5, column image, value 'nope.jpg': file not found (looked for {tmp_path / 'nope.jpg'}); "
        "fix: correct the path; relative paths start at the CSV's folder"
    ]
    assert errors["C"] == [
        "row 6, column image, value 'small.png': the image is 200x500, smaller than 256 px on its short side; "
        "fix: use a photo of at least 256x256 px"
    ]
    assert errors["D"] == [
        "row 7, column image, value 'corrupt.jpg': not an image file PIL can read (corrupt, or not an image); "
        "fix: re-export it as JPEG or PNG"
    ]
    assert errors["E"] == [
        "row 8, column image, value 'cut.jpg': the image file is truncated (incomplete download or copy); "
        "fix: copy or download the file again"
    ]
    assert errors["F"] == [
        "row 9, column image, value 'empty.png': the file is empty; fix: replace it with the real photo"
    ]
    assert errors["G"] == [
        "row 10, column shot, value 'selfie': not an allowed value; fix: use one of: close, half_body, "
        "full_body, or leave it empty",
        "row 10, column size_cm, value 'big': not a size; fix: write WIDTHxHEIGHT in centimetres, e.g. 38x30",
        "row 10, column candidates, value '0': out of range 1–64; fix: use 1 to 64, or leave it empty",
        "row 10, column seed, value 'x': not a whole number; fix: use a whole number from 0 to 2^63-1, or leave it empty",
    ]
    assert errors["H"] == [
        "row 11, column image, value 'nope://host/x.jpg': nope:// is not a storage protocol that fsspec "
        "knows; fix: use a local path, an http(s) URL, or an fsspec URI such as s3://bucket/path or gs://bucket/path"
    ]


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    write_photo(tmp_path / "big.png", (2000, 1500))
    csv = write_catalog(tmp_path, [{"sku": "A", "image": "big.png"}])
    (row,) = load_catalog(csv, max_pixels=1_000_000).rows
    assert row.errors == [
        "row 2, column image, value 'big.png': 2000x1500 is 3 megapixels, over the 1-megapixel limit "
        "(a decompression bomb or a huge scan); fix: downscale the photo (2048 px on the long side is plenty) "
        "or raise run.max_image_pixels"
    ]


@pytest.mark.parametrize(
    ("mode", "warning"),
    [
        ("CMYK", "CMYK image: converted to RGB (colours may shift)"),
        ("RGBA", "RGBA image with transparency: its alpha is used as the product mask"),
        ("I;16", "I;16 (16/32-bit) image: scaled down to 8-bit RGB"),
        ("P", None),
    ],
)
def test_non_rgb_modes_are_accepted_and_converted(tmp_path: Path, mode: str, warning: str | None) -> None:
    name = "img.tif" if mode in ("CMYK",) else "img.png"
    arr = np.zeros((300, 300, 3), np.uint8)
    arr[50:250, 80:220] = (200, 30, 40)
    im = Image.fromarray(arr)
    if mode == "RGBA":
        alpha = np.zeros((300, 300), np.uint8)
        alpha[50:250, 80:220] = 255
        im = im.convert("RGBA")
        im.putalpha(Image.fromarray(alpha))
    elif mode == "I;16":
        im = Image.fromarray(arr[..., 0].astype(np.uint16) * 257)
    else:
        im = im.convert(mode)
    im.save(tmp_path / name)
    csv = write_catalog(tmp_path, [{"sku": "A", "image": name}])
    (row,) = load_catalog(csv).rows
    assert row.ok, row.errors
    assert row.warnings == (
        [f"row 2, column image, value '{name}': {warning}; fix: " + row.warnings[0].split("fix: ")[1]]
        if warning
        else []
    )
    rgb, alpha = load_product_image(row.image_path)
    assert rgb.shape == (300, 300, 3) and rgb.dtype == np.uint8
    assert rgb[150, 150].max() > 100 and rgb[10, 10].max() < 30
    if mode == "RGBA":
        assert alpha is not None and alpha[150, 150] == 255 and alpha[10, 10] == 0
    else:
        assert alpha is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("²", "not a whole number of candidates"),
        ("٣", "not a whole number of candidates"),
        ("2.5", "not a whole number of candidates"),
        ("-1", "out of range 1–64"),
        ("0", "out of range 1–64"),
        ("100000", "out of range 1–64"),
    ],
)
def test_odd_candidates_are_row_errors_not_crashes(tmp_path: Path, value: str, problem: str) -> None:
    write_photo(tmp_path / "a.jpg")
    csv = write_catalog(tmp_path, [{"sku": "A", "image": "a.jpg", "candidates": value, "seed": "²"}])
    (row,) = load_catalog(csv).rows
    assert row.errors == [
        f"row 2, column candidates, value {value!r}: {problem}; fix: use 1 to 64, or leave it empty",
        "row 2, column seed, value '²': not a whole number; fix: use a whole number from 0 to 2^63-1, "
        "or leave it empty",
    ]
    assert row.candidates is None and row.seed is None


def test_row_numbers_are_spreadsheet_rows(tmp_path: Path) -> None:
    """A quoted cell with line breaks is one row; a blank line is a row too, as a spreadsheet shows."""
    write_photo(tmp_path / "a.jpg")
    (tmp_path / "c.csv").write_text(
        'sku,image,notes\nA,a.jpg,"first line\nsecond line\nthird"\n\nB,a.jpg,\nC,nope.jpg,\n',
        encoding="utf-8",
    )
    rows = load_catalog(tmp_path / "c.csv").rows
    assert [(r.sku, r.row_number) for r in rows] == [("A", 2), ("B", 4), ("C", 5)]
    assert rows[0].notes == "first line\nsecond line\nthird"
    assert rows[2].errors[0].startswith("row 5, column image, value 'nope.jpg': file not found")


def _png_claiming_size(path: Path, width: int, height: int) -> None:
    """A small PNG whose header says ``width`` x ``height`` (its pixel data stays small)."""
    import struct
    import zlib

    write_photo(path, (16, 16))
    data = bytearray(path.read_bytes())
    start = data.index(b"IHDR")
    data[start + 4 : start + 12] = struct.pack(">II", width, height)
    data[start + 17 : start + 21] = struct.pack(">I", zlib.crc32(bytes(data[start : start + 17])))
    path.write_bytes(bytes(data))


def test_raising_max_image_pixels_also_raises_pillows_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 30000x30000 image is over Pillow's own limit too: the setting must govern both."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    _png_claiming_size(tmp_path / "huge.png", 30000, 30000)
    csv = write_catalog(tmp_path, [{"sku": "A", "image": "huge.png"}])
    (row,) = load_catalog(csv).rows
    assert row.errors == [
        "row 2, column image, value 'huge.png': 30000x30000 is 900 megapixels, over the 64-megapixel limit "
        "(a decompression bomb or a huge scan); fix: downscale the photo (2048 px on the long side is "
        "plenty) or raise run.max_image_pixels"
    ]
    # raised: the size passes, and what is left is this file's own problem (its pixels are missing)
    (row,) = load_catalog(csv, max_pixels=1_000_000_000).rows
    assert len(row.errors) == 1 and "megapixel" not in row.errors[0] and "bomb" not in row.errors[0]
    # and Pillow itself now opens it wherever the run opens the photo
    with Image.open(tmp_path / "huge.png") as im:
        assert im.size == (30000, 30000)


class _Handler(http.server.BaseHTTPRequestHandler):
    payload = b""

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/slow"):
            time.sleep(2)
        if self.path.startswith("/cut"):  # promises more than it sends, then closes
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.payload) * 2))
            self.end_headers()
            self.wfile.write(self.payload)
            self.wfile.flush()
            self.close_connection = True
            return
        if self.path.startswith("/trickle"):  # a byte at a time, each well within a read timeout
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.payload)))
            self.end_headers()
            try:
                for i in range(len(self.payload)):
                    self.wfile.write(self.payload[i : i + 1])
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
            return
        if self.path.startswith("/missing"):
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args: object) -> None:
        pass


def test_http_images_are_downloaded_once_with_a_timeout(tmp_path: Path) -> None:
    write_photo(tmp_path / "src.jpg")
    _Handler.payload = (tmp_path / "src.jpg").read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        csv = write_catalog(
            tmp_path,
            [
                {"sku": "A", "image": f"{base}/bag.jpg"},
                {"sku": "B", "image": f"{base}/missing.jpg"},
                {"sku": "C", "image": f"{base}/slow.jpg"},
            ],
        )
        cache = tmp_path / "cache"
        a, b, c = load_catalog(csv, cache_dir=cache, download_timeout_s=0.5).rows
        assert a.ok and a.image_path.parent == cache and a.image_path.read_bytes() == _Handler.payload
        assert b.errors == [
            f"row 3, column image, value '{base}/missing.jpg': download failed (HTTP 404 Not Found); "
            "fix: check the URL, or download the file and give its path"
        ]
        assert c.errors and "download failed" in c.errors[0] and "timed out" in c.errors[0]
        # a server that closes mid-download, or trickles: that row's error, the others go on
        cut, trickle, after = load_catalog(
            write_catalog(
                tmp_path,
                [
                    {"sku": "D", "image": f"{base}/cut.jpg"},
                    {"sku": "E", "image": f"{base}/trickle.jpg"},
                    {"sku": "F", "image": f"{base}/after.jpg"},
                ],
                "3.csv",
            ),
            cache_dir=cache,
            download_timeout_s=1.0,
        ).rows
        n = len(_Handler.payload)
        assert cut.errors == [
            f"row 2, column image, value '{base}/cut.jpg': download failed (the server closed the connection "
            f"after {n} of {2 * n} bytes); fix: check the URL, or download the file and give its path"
        ]
        assert trickle.errors == [
            f"row 3, column image, value '{base}/trickle.jpg': download failed (timed out after 1 s); "
            "fix: check the URL, or download the file and give its path"
        ]
        assert after.ok
        assert not list(cache.glob("*tmp*"))
        # a second validation reads the cache, not the server
        server.shutdown()
        (a2,) = load_catalog(
            write_catalog(tmp_path, [{"sku": "A", "image": f"{base}/bag.jpg"}], "2.csv"), cache_dir=cache
        ).rows
        assert a2.ok and a2.image_sha256 == a.image_sha256
    finally:
        server.server_close()


def test_image_checks_are_reused_until_a_file_changes(tmp_path: Path) -> None:
    from autoshoot.catalog import ImageCheckCache

    write_photo(tmp_path / "a.png", (300, 300), seed=1)
    alpha = Image.new("RGBA", (300, 300), (10, 20, 30, 0))
    alpha.save(tmp_path / "b.png")
    csv = write_catalog(tmp_path, [{"sku": "A", "image": "a.png"}, {"sku": "B", "image": "b.png"}])
    cache = ImageCheckCache(tmp_path / "checks.json")
    first = load_catalog(csv, check_cache=cache).rows
    cache.save()
    cache = ImageCheckCache(tmp_path / "checks.json")
    assert len(cache.entries) == 2
    again = load_catalog(csv, check_cache=cache).rows
    assert [(r.image_sha256, r.image_size, r.image_mode, r.warnings) for r in again] == [
        (r.image_sha256, r.image_size, r.image_mode, r.warnings) for r in first
    ]
    assert not cache.changed  # nothing was checked afresh
    # a changed file is read again: a now-truncated image is caught, not trusted
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])
    changed = load_catalog(csv, check_cache=cache).rows
    assert changed[0].errors and "truncated" in changed[0].errors[0]
    # different limits check afresh too
    small = load_catalog(csv, check_cache=cache, min_side=400).rows
    assert "smaller than 400 px" in small[1].errors[0]
