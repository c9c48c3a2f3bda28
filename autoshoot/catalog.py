"""Catalog (CSV, TSV, XLSX or Parquet, read through pandas) → validated rows, with messages that
name the row, the column, the value and the fix.

Validation reads each image once: it hashes the bytes (the cache key of every stage) and
decodes them to catch missing, corrupt, truncated, tiny and oversized images before any model
loads. It never imports torch.

Row numbers are the rows a spreadsheet shows: the header is row 1, a blank line is a row, and a
quoted cell that spans several lines is still one row; the same in every format (a Parquet
file's column names count as row 1).
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from autoshoot.errors import CatalogError
from autoshoot.vocab import INFO_COLUMNS, OVERRIDE_COLUMNS, REQUIRED_COLUMNS

logger = logging.getLogger(__name__)

KNOWN_COLUMNS = REQUIRED_COLUMNS + INFO_COLUMNS + tuple(OVERRIDE_COLUMNS)
MAX_CANDIDATES = 64


@dataclass
class Row:
    """One catalog row. ``fields`` holds every column as stripped text."""

    row_number: int
    sku: str
    image: str  # the value as written in the CSV
    fields: dict[str, str]
    image_path: Path | None = None  # local, readable file (URLs are downloaded) once valid
    image_uri: str = ""  # the object-store URI it was fetched from (s3://…), else ""
    image_sha256: str = ""
    image_size: tuple[int, int] = (0, 0)
    image_mode: str = ""
    candidates: int | None = None
    seed: int | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def title(self) -> str:
        return self.fields.get("title", "")

    @property
    def category(self) -> str:
        return self.fields.get("category", "")

    @property
    def brand(self) -> str:
        return self.fields.get("brand", "")

    @property
    def notes(self) -> str:
        return self.fields.get("notes", "")

    @property
    def overrides(self) -> dict[str, str]:
        """Override columns with a value: they replace the brief's field of the same name."""
        return {k: v for k, v in self.fields.items() if k in OVERRIDE_COLUMNS and v}

    def error(self, column: str, value: str, problem: str, fix: str) -> None:
        self.errors.append(_message(self.row_number, column, value, problem, fix))

    def warn(self, column: str, value: str, problem: str, fix: str) -> None:
        self.warnings.append(_message(self.row_number, column, value, problem, fix))


@dataclass
class Catalog:
    path: Path | str  # a URI for a catalog on an object store
    columns: list[str]
    rows: list[Row]
    warnings: list[str]  # catalog-wide (unknown columns)
    check_cache: ImageCheckCache | None = None  # set by the runner: saved once the run holds its lock

    @property
    def valid_rows(self) -> list[Row]:
        return [r for r in self.rows if r.ok]

    @property
    def invalid_rows(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]

    def messages(self) -> list[str]:
        out = [f"warning: {w}" for w in self.warnings]
        for row in self.rows:
            out += [f"error: {e}" for e in row.errors]
            out += [f"warning: {w}" for w in row.warnings]
        return out


def _message(row: int, column: str, value: str, problem: str, fix: str) -> str:
    return f"row {row}, column {column}, value {value!r}: {problem}; fix: {fix}"


# ---------------------------------------------------------------------------------------


def load_catalog(
    path: str | Path,
    *,
    min_side: int = 256,
    max_pixels: int = 64_000_000,
    download_timeout_s: float = 30.0,
    cache_dir: Path | None = None,
    check_images: bool = True,
    check_cache: ImageCheckCache | None = None,
) -> Catalog:
    """Read and validate a catalog CSV: a local path or an object-store URI (``s3://…``).

    Raises ``CatalogError`` when the file cannot be used at all (missing, not a CSV, no ``sku``
    or ``image`` column). Every row-level problem is recorded on the row instead, so one bad
    row never stops the others. Relative image paths start at the catalog's folder, which for
    a catalog on an object store is a folder there too.
    """
    from autoshoot.storage import is_uri, local_path, parent_uri

    # 1. read the table (CSV, TSV, XLSX or Parquet, through pandas)
    allow_image_pixels(max_pixels)
    path = str(path) if is_uri(path) else local_path(path)
    columns, records = read_records(path)
    base: Path | str = parent_uri(path) if isinstance(path, str) else path.parent
    images = ImageSources(cache_dir or default_cache_dir(), download_timeout_s)

    # 2. catalog-wide checks: required and unknown columns
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise CatalogError(
            f"{path}: the required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} {'are' if len(missing) > 1 else 'is'} missing (the header has: "
            f"{', '.join(columns) or 'nothing'}); fix: add a header row with at least: sku,image"
        )
    catalog_warnings = [
        f"column {c!r} is not a known column and is ignored; known columns are: {', '.join(KNOWN_COLUMNS)}"
        for c in columns
        if c not in KNOWN_COLUMNS
    ]

    # 3. row checks
    rows: list[Row] = []
    first_row_of_sku: dict[str, int] = {}
    for row_number, record in records:
        row = Row(
            row_number=row_number,
            sku=record.get("sku", ""),
            image=record.get("image", ""),
            fields=record,
        )
        check_sku(row, first_row_of_sku)
        check_overrides(row)
        check_numbers(row)
        if check_images:
            check_image(row, base, min_side, max_pixels, download_timeout_s, cache_dir, check_cache, images)
        rows.append(row)
    return Catalog(path=path, columns=columns, rows=rows, warnings=catalog_warnings)


# the catalog formats, by file suffix; anything else is read as CSV
TEXT_FORMATS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
EXCEL_FORMATS = (".xlsx", ".xlsm")
PARQUET_FORMATS = (".parquet", ".pq")


def catalog_format(path: Path | str) -> str:
    """csv, tsv, xlsx or parquet, from the file's suffix (CSV for any other)."""
    suffix = Path(str(path).split("?", 1)[0]).suffix.lower()
    if suffix in EXCEL_FORMATS:
        return "xlsx"
    if suffix in PARQUET_FORMATS:
        return "parquet"
    if suffix == ".xls":
        raise CatalogError(
            f"catalog {str(path)!r} is an old .xls workbook; fix: save it as .xlsx (or as CSV) and pass that"
        )
    return "tsv" if TEXT_FORMATS.get(suffix) == "\t" else "csv"


def read_records(path: Path | str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The catalog's columns and its non-blank rows as ``(row number, column → stripped text)``.

    Every format is read through pandas, as text cells. Row numbers are the ones a spreadsheet
    shows: the header is row 1 (a Parquet file's column names count as that header row).
    """
    kind = catalog_format(path)
    try:
        data = read_catalog_bytes(path)
    except FileNotFoundError:
        raise CatalogError(
            f"catalog {str(path)!r} does not exist; fix: pass the path of a CSV, TSV, XLSX or Parquet file"
        ) from None
    if kind == "parquet":
        return records_from_table(read_parquet_table(path, data))
    if kind == "xlsx":
        return records_from_table(read_excel_table(path, data))
    return records_from_table(read_text_table(path, data, TEXT_FORMATS[f".{kind}"]))


def read_csv(path: Path | str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """A CSV or TSV catalog (by suffix), or any other format ``read_records`` knows."""
    return read_records(path)


def read_text_table(path: Path | str, data: bytes, sep: str) -> list[list[object]]:
    """The cells of a CSV/TSV, one list per spreadsheet row, blank lines kept (as empty rows)."""
    import pandas as pd

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CatalogError(
            f"catalog {str(path)!r} is not UTF-8 text ({err}); fix: save it as UTF-8 CSV"
        ) from err
    if not text.strip("\r\n"):
        raise CatalogError(f"catalog {str(path)!r} is empty; fix: add a header row: sku,image")
    first_line = next(iter(text.splitlines()), "")
    width = max(1, sum(1 for _ in next(csv.reader([first_line], delimiter=sep), [])))
    try:
        frame = pd.read_csv(
            io.StringIO(text, newline=""),
            sep=sep,
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,  # a blank line is a spreadsheet row: later numbers stay right
            engine="python",
            quotechar='"',
            on_bad_lines=lambda cells: cells[:width],  # cells past the header's are ignored
        )
    except pd.errors.EmptyDataError:
        raise CatalogError(f"catalog {str(path)!r} is empty; fix: add a header row: sku,image") from None
    except (pd.errors.ParserError, csv.Error) as err:
        raise CatalogError(
            f"catalog {str(path)!r} cannot be read as {'TSV' if sep != ',' else 'CSV'} ({err}); "
            "fix: check its quoting, or export it again from the spreadsheet"
        ) from err
    return frame.values.tolist()


def read_excel_table(path: Path | str, data: bytes) -> list[list[object]]:
    """The cells of the workbook's first sheet, one list per spreadsheet row from row 1."""
    import pandas as pd

    try:
        frame = pd.read_excel(io.BytesIO(data), sheet_name=0, header=None, dtype=object, engine="openpyxl")
    except ImportError as err:
        raise CatalogError(
            f"catalog {str(path)!r}: reading .xlsx needs openpyxl ({err}); fix: pip install openpyxl"
        ) from err
    except Exception as err:  # noqa: BLE001 - zipfile, openpyxl and pandas each raise their own
        raise CatalogError(
            f"catalog {str(path)!r} is not a readable XLSX workbook ({type(err).__name__}: {err}); "
            "fix: save it again from the spreadsheet as .xlsx, or as CSV"
        ) from err
    if frame.empty:
        raise CatalogError(f"catalog {str(path)!r} is empty; fix: add a header row: sku,image")
    return frame.values.tolist()


def read_parquet_table(path: Path | str, data: bytes) -> list[list[object]]:
    """A Parquet file's column names, then its rows (whole numbers stay whole, nulls empty)."""
    import pandas as pd

    try:
        frame = pd.read_parquet(io.BytesIO(data), dtype_backend="numpy_nullable")
    except Exception as err:  # noqa: BLE001 - pyarrow raises its own error types
        raise CatalogError(
            f"catalog {str(path)!r} is not a readable Parquet file ({type(err).__name__}: {err}); "
            "fix: write it again, or pass the catalog as CSV"
        ) from err
    return [[str(c) for c in frame.columns], *frame.astype(object).values.tolist()]


def cell_text(value: object) -> str:
    """A cell as stripped text: empty for a missing cell; a whole-number float without ".0"."""
    if value is None:
        return ""
    try:
        import pandas as pd

        if pd.isna(value):  # type: ignore[arg-type]
            return ""
    except (TypeError, ValueError):
        pass
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def records_from_table(table: list[list[object]]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Columns (the first row) and the numbered non-blank records after it, from row 2 on."""
    if not table:
        raise CatalogError("the catalog is empty; fix: add a header row: sku,image")
    columns = [cell_text(h) for h in table[0]]
    records: list[tuple[int, dict[str, str]]] = []
    for row_number, cells in enumerate(table[1:], start=2):
        texts = [cell_text(c) for c in cells]
        if not any(texts):
            continue  # a blank row
        record = {col: (texts[i] if i < len(texts) else "") for i, col in enumerate(columns) if col}
        records.append((row_number, record))
    return columns, records


def read_catalog_bytes(path: Path | str) -> bytes:
    """The catalog file's bytes. Raises FileNotFoundError, or CatalogError for an unusable URI."""
    if isinstance(path, Path):
        if not path.is_file():
            raise FileNotFoundError(path)
        return path.read_bytes()
    from autoshoot.storage import StorageUnavailable, read_bytes

    try:
        return read_bytes(path)
    except StorageUnavailable as err:
        raise CatalogError(f"catalog {path!r}: {err.problem}; fix: {err.fix}") from err
    except IsADirectoryError:
        raise CatalogError(f"catalog {path!r} is a folder; fix: pass the URI of a CSV file") from None
    except FileNotFoundError:
        raise
    except OSError as err:
        raise CatalogError(
            f"catalog {path!r} cannot be read ({err}); fix: check the URI and credentials"
        ) from err


def check_sku(row: Row, first_row_of_sku: dict[str, int]) -> None:
    if not row.sku:
        row.error("sku", row.sku, "the SKU is empty", "give every row a unique SKU")
    elif row.sku in first_row_of_sku:
        row.error(
            "sku",
            row.sku,
            f"duplicate SKU, already used on row {first_row_of_sku[row.sku]}",
            "give every row a unique SKU, or delete the duplicate row",
        )
    else:
        first_row_of_sku[row.sku] = row.row_number


def check_overrides(row: Row) -> None:
    for column, allowed in OVERRIDE_COLUMNS.items():
        value = row.fields.get(column, "")
        if not value:
            continue
        if allowed is not None and value not in allowed:
            row.error(
                column, value, "not an allowed value", f"use one of: {', '.join(allowed)}, or leave it empty"
            )
        if column == "size_cm" and parse_size_cm(value) is None:
            row.error(column, value, "not a size", "write WIDTHxHEIGHT in centimetres, e.g. 38x30")


def parse_size_cm(value: str) -> tuple[float, float] | None:
    parts = value.lower().replace("cm", "").replace(" ", "").split("x")
    try:
        width, height = (float(p) for p in parts)
    except ValueError:
        return None
    return (width, height) if 0 < width < 500 and 0 < height < 500 else None


def check_numbers(row: Row) -> None:
    raw = row.fields.get("candidates", "")
    if raw:
        value = parse_whole_number(raw)
        fix = f"use 1 to {MAX_CANDIDATES}, or leave it empty"
        if value is None:
            row.error("candidates", raw, "not a whole number of candidates", fix)
        elif not 1 <= value <= MAX_CANDIDATES:
            row.error("candidates", raw, f"out of range 1–{MAX_CANDIDATES}", fix)
        else:
            row.candidates = value
    raw = row.fields.get("seed", "")
    if raw:
        value = parse_whole_number(raw)
        fix = "use a whole number from 0 to 2^63-1, or leave it empty"
        if value is None:
            row.error("seed", raw, "not a whole number", fix)
        elif not 0 <= value < 2**63:
            row.error("seed", raw, "out of range 0 to 2^63-1", fix)
        else:
            row.seed = value


def parse_whole_number(text: str) -> int | None:
    """An optionally signed run of ASCII digits, else None.

    ``str.isdigit`` and ``int`` disagree on characters such as ``²`` (a digit that ``int``
    refuses) and accept other scripts' digits; a catalog number is plain 0-9.
    """
    return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else None


# ---------------------------------------------------------------------------------------
# images


def check_image(
    row: Row,
    base: Path | str,
    min_side: int,
    max_pixels: int,
    timeout_s: float,
    cache_dir: Path | None,
    check_cache: ImageCheckCache | None = None,
    images: ImageSources | None = None,
) -> None:
    """Resolve, read once, hash and decode the row's image; record any problem on the row.

    ``base`` is the catalog's folder: a local folder, or the URI of a folder on an object store.
    """
    value = row.image
    if not value:
        row.error("image", value, "no image given", "give the path or http(s) URL of the product photo")
        return
    # 1. resolve: a URL or URI is fetched into the cache, a path is relative to the CSV's folder
    images = images or ImageSources(cache_dir or default_cache_dir(), timeout_s)
    resolved = images.resolve(value, base)
    if isinstance(resolved, str):
        try:
            local = images.fetch(resolved)
        except OSError as err:
            row.error("image", value, *images.fetch_problem(resolved, err))
            return
        except ImageSourceError as err:
            row.error("image", value, err.problem, err.fix)
            return
        if not resolved.lower().startswith(("http://", "https://")):
            row.image_uri = resolved
    else:
        local = resolved
    # 2. an unchanged file that passed before (same size and mtime) is not read again
    limits = (min_side, max_pixels)
    if check_cache is not None and check_cache.restore(row, local, limits):
        return
    # 3. read the bytes once
    try:
        data = local.read_bytes()
    except FileNotFoundError:
        row.error(
            "image",
            value,
            f"file not found (looked for {local})",
            "correct the path; relative paths start at the CSV's folder",
        )
        return
    except IsADirectoryError:
        row.error("image", value, f"{local} is a folder, not an image", "give the path of an image file")
        return
    except OSError as err:
        row.error(
            "image", value, f"file cannot be read ({err.strerror or err})", "check the file's permissions"
        )
        return
    row.image_path = local
    row.image_sha256 = hashlib.sha256(data).hexdigest()
    # 4. decode and check size and mode
    problem, fix = inspect_image_bytes(data, row, min_side, max_pixels)
    if problem:
        row.error("image", value, problem, fix)
    elif check_cache is not None:
        check_cache.remember(row, local, limits)


class ImageCheckCache:
    """Passed image checks keyed by path, size and mtime, kept in a JSON file of the run.

    A rerun over an unchanged catalog then stats each image instead of reading, hashing and
    decoding it. Any change to a file's size or mtime, or to the limits, checks it afresh.
    """

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, list] = {}
        self.changed = False
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") == 1:
                self.entries = data["entries"]
        except (OSError, ValueError, KeyError, AttributeError):
            pass

    def restore(self, row: Row, local: Path, limits: tuple[int, int]) -> bool:
        entry = self.entries.get(str(local.absolute()))
        if entry is None:
            return False
        try:
            st = local.stat()
        except OSError:
            return False
        size, mtime_ns, old_limits, sha, width, height, mode, transparent = entry
        if (size, mtime_ns, tuple(old_limits)) != (st.st_size, st.st_mtime_ns, limits):
            return False
        row.image_path, row.image_sha256 = local, sha
        row.image_size, row.image_mode = (width, height), mode
        note_mode(row, mode, transparent)
        return True

    def remember(self, row: Row, local: Path, limits: tuple[int, int]) -> None:
        st = local.stat()
        transparent = any("transparency" in w for w in row.warnings)
        self.entries[str(local.absolute())] = [
            st.st_size,
            st.st_mtime_ns,
            list(limits),
            row.image_sha256,
            *row.image_size,
            row.image_mode,
            transparent,
        ]
        self.changed = True

    def save(self) -> None:
        if self.changed:
            from autoshoot.io import atomic_write_text

            atomic_write_text(self.path, json.dumps({"version": 1, "entries": self.entries}))
            self.changed = False


def inspect_image_bytes(data: bytes, row: Row, min_side: int, max_pixels: int) -> tuple[str, str]:
    from PIL import Image, UnidentifiedImageError

    if not data:
        return "the file is empty", "replace it with the real photo"
    try:
        # run.max_image_pixels is the one limit: the size is checked below, from the header,
        # before any pixel is decoded, so Pillow's own bomb check is not needed for the open
        with _open_header(data) as im:
            width, height = im.size
            row.image_size, row.image_mode = (width, height), im.mode
            if width * height > max_pixels:
                return (
                    f"{width}x{height} is {width * height / 1e6:.0f} megapixels, over the "
                    f"{max_pixels / 1e6:.0f}-megapixel limit (a decompression bomb or a huge scan)",
                    "downscale the photo (2048 px on the long side is plenty) or raise run.max_image_pixels",
                )
            if min(width, height) < min_side:
                return (
                    f"the image is {width}x{height}, smaller than {min_side} px on its short side",
                    f"use a photo of at least {min_side}x{min_side} px",
                )
            if im.format == "JPEG":
                im.draft(im.mode, (1, 1))  # decode at 1/8 scale: fast, still reads every byte
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
            note_mode(row, im.mode, im.mode == "P" and "transparency" in im.info)
    except UnidentifiedImageError:
        return "not an image file PIL can read (corrupt, or not an image)", "re-export it as JPEG or PNG"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        text = str(err)
        if "truncated" in text.lower():
            return (
                "the image file is truncated (incomplete download or copy)",
                "copy or download the file again",
            )
        return f"the image is corrupt ({text})", "re-export it as JPEG or PNG"
    return "", ""


_PILLOW_LIMIT_LOCK = threading.Lock()


def _open_header(data: bytes):  # type: ignore[no-untyped-def]
    """``Image.open`` (reads the header only) without Pillow's pixel limit; the caller checks it."""
    from PIL import Image

    with _PILLOW_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(io.BytesIO(data))
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def allow_image_pixels(max_pixels: int) -> None:
    """Let Pillow open every image ``run.max_image_pixels`` admits, in this process.

    Pillow refuses images over its own limit (about 89 megapixels, an error at twice that)
    wherever they are opened; raising ``run.max_image_pixels`` must raise that limit too. It is
    only ever raised, so the renders and masks of a run keep Pillow's default protection.
    """
    from PIL import Image

    global _PILLOW_DEFAULT_LIMIT
    if _PILLOW_DEFAULT_LIMIT is None:
        _PILLOW_DEFAULT_LIMIT = Image.MAX_IMAGE_PIXELS or 0
    Image.MAX_IMAGE_PIXELS = max(int(max_pixels), _PILLOW_DEFAULT_LIMIT)


_PILLOW_DEFAULT_LIMIT: int | None = None


def note_mode(row: Row, mode: str, palette_transparency: bool = False) -> None:
    """Non-RGB modes are accepted and converted when loaded (``load_product_image``); say so."""
    if mode in ("RGB", "L"):
        return
    if mode in ("RGBA", "LA", "PA") or palette_transparency:
        row.warnings.append(
            _message(
                row.row_number,
                "image",
                row.image,
                f"{mode} image with transparency: its alpha is used as the product mask",
                "nothing to do",
            )
        )
    elif mode == "CMYK":
        row.warnings.append(
            _message(
                row.row_number,
                "image",
                row.image,
                "CMYK image: converted to RGB (colours may shift)",
                "export it as sRGB for exact colours",
            )
        )
    elif mode.startswith("I") or mode == "F":
        row.warnings.append(
            _message(
                row.row_number,
                "image",
                row.image,
                f"{mode} (16/32-bit) image: scaled down to 8-bit RGB",
                "export it as 8-bit sRGB for exact colours",
            )
        )


def load_product_image(path: Path):  # type: ignore[no-untyped-def]
    """The product photo as (HxWx3 uint8 RGB array, HxW uint8 alpha or None).

    CMYK, palette, 16-bit and greyscale images are converted to RGB; an alpha channel (or
    palette transparency) is returned separately so the geometry can use it as the mask.
    """
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        alpha = None
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(im, dtype=np.float64)
            hi = 65535.0 if arr.max() > 255 else 255.0
            im = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
        if im.mode in ("RGBA", "LA", "PA"):
            alpha = np.asarray(im.getchannel("A"), dtype=np.uint8).copy()
            if alpha.min() == 255:
                alpha = None  # opaque everywhere: no information
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    return rgb, alpha


class ImageSourceError(Exception):
    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.problem, self.fix = problem, fix


class ImageSources:
    """Where an image cell points, and fetching what is not a local file into the cache.

    - ``http(s)://`` URLs are downloaded once (``download_image``);
    - object-store URIs (``s3://``, ``gs://``, any fsspec URL) through fsspec, once per version;
    - a relative path starts at the catalog's folder, local or on an object store.
    """

    def __init__(self, cache_dir: Path, timeout_s: float):
        self.cache_dir = Path(cache_dir)
        self.timeout_s = timeout_s
        self._uris = None

    def resolve(self, value: str, base: Path | str) -> Path | str:
        """A local Path, or a URL/URI (str) to fetch."""
        from autoshoot.storage import is_uri, join_uri, local_path

        if value.lower().startswith(("http://", "https://")) or is_uri(value):
            return value
        local = local_path(value).expanduser()
        if local.is_absolute():
            return local
        return join_uri(base, value) if isinstance(base, str) else base / local

    def fetch(self, source: str) -> Path:
        if source.lower().startswith(("http://", "https://")):
            return download_image(source, self.cache_dir, self.timeout_s)
        from autoshoot.storage import StorageUnavailable, UriImages

        if self._uris is None:
            self._uris = UriImages(self.cache_dir)
        try:
            return self._uris.fetch(source)
        except StorageUnavailable as err:  # no package for this protocol, or no such protocol
            raise ImageSourceError(err.problem, err.fix) from err

    def fetch_problem(self, source: str, err: OSError) -> tuple[str, str]:
        if source.lower().startswith(("http://", "https://")):
            return f"download failed ({err})", "check the URL, or download the file and give its path"
        if isinstance(err, FileNotFoundError):
            return (
                f"not found (looked for {source})",
                "correct the path; relative paths start at the CSV's folder",
            )
        if isinstance(err, IsADirectoryError):
            return f"{source} is a folder, not an image", "give the path of an image file"
        return f"cannot be read ({err})", "check the URI and the credentials for its store"


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "autoshoot" / "images"


def download_image(url: str, cache_dir: Path, timeout_s: float) -> Path:
    """Download ``url`` once into ``cache_dir`` (atomically) and return the local file."""
    from autoshoot.io import atomic_write_bytes

    name = hashlib.sha256(url.encode()).hexdigest()[:32]
    suffix = Path(url.split("?", 1)[0]).suffix.lower()
    target = cache_dir / (
        name + (suffix if suffix in (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff") else ".img")
    )
    if target.is_file():
        return target
    request = urllib.request.Request(url, headers={"User-Agent": "autoshoot"})
    try:
        data = read_url(request, timeout_s)
    except urllib.error.HTTPError as err:
        raise OSError(f"HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        raise OSError(str(err.reason)) from err
    except TimeoutError as err:
        raise OSError(f"timed out after {timeout_s:g} s") from err
    except http.client.IncompleteRead as err:
        raise OSError(
            f"the server closed the connection after {len(err.partial)} of "
            f"{len(err.partial) + (err.expected or 0)} bytes"
        ) from err
    except (http.client.HTTPException, ValueError) as err:
        raise OSError(f"{type(err).__name__}: {err}") from err
    atomic_write_bytes(target, data)
    logger.info("downloaded %s → %s (%d bytes)", url, target, len(data))
    return target


def read_url(request: urllib.request.Request, timeout_s: float, chunk: int = 1 << 16) -> bytes:
    """The body of ``request``, all of it within ``timeout_s`` seconds or ``TimeoutError``.

    ``urlopen``'s timeout bounds each socket read, so a server that trickles a byte at a time
    would never time out; here every read gets only what is left of the whole budget.
    """
    deadline = time.monotonic() + timeout_s
    parts: list[bytes] = []
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        expected = response.length  # Content-Length, or None
        sock = _response_socket(response)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if sock is not None:
                sock.settimeout(left)
            part = response.read1(chunk) if hasattr(response, "read1") else response.read(chunk)
            if not part:
                break
            parts.append(part)
        if expected is not None and response.length:
            raise http.client.IncompleteRead(b"".join(parts), response.length)
    return b"".join(parts)


def _response_socket(response):  # type: ignore[no-untyped-def]
    """The socket under an ``http.client`` response, to shorten its timeout; None if hidden."""
    raw = getattr(getattr(response, "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if hasattr(sock, "settimeout") else None
