"""CSV, TSV, XLSX and Parquet catalogs are read through pandas and give the same rows and messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import write_catalog, write_photo

from autoshoot.catalog import load_catalog
from autoshoot.errors import CatalogError

COLUMNS = ["sku", "image", "notes", "shot", "seed", "candidates"]
# a blank row between B and C: row numbers must still be the spreadsheet's
ROWS: list[list[object]] = [
    ["A", "a.jpg", "first line\nsecond line", "", 7, ""],
    ["B", "a.jpg", "", "wide", "", ""],
    [None, None, None, None, None, None],
    ["C", "missing.jpg", "", "", "", 99],
    ["A", "a.jpg", "", "", "", 2],
]


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(COLUMNS)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def write_text(path: Path, rows: list[list[object]], sep: str) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=sep)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row] if any(v is not None for v in row) else [])
    return path


def write_parquet(path: Path, rows: list[list[object]]) -> Path:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["seed"] = frame["seed"].replace("", None).astype("Int64")
    frame["candidates"] = frame["candidates"].replace("", None).astype("Int64")
    frame.to_parquet(path)
    return path


def summary(path: Path) -> tuple[list[tuple[str, int, str, int | None]], list[str]]:
    catalog = load_catalog(path, min_side=64)
    rows = [(r.sku, r.row_number, r.notes, r.seed) for r in catalog.rows]
    return rows, catalog.messages()


def test_every_format_gives_the_csv_rows_and_messages(tmp_path: Path) -> None:
    write_photo(tmp_path / "a.jpg", (128, 128))
    reference = summary(write_text(tmp_path / "c.csv", ROWS, ","))
    rows, messages = reference
    assert rows == [
        ("A", 2, "first line\nsecond line", 7),
        ("B", 3, "", None),
        ("C", 5, "", None),
        ("A", 6, "", None),
    ]
    assert messages == [
        "error: row 3, column shot, value 'wide': not an allowed value; fix: use one of: close, half_body, "
        "full_body, or leave it empty",
        "error: row 5, column candidates, value '99': out of range 1–64; fix: use 1 to 64, or leave it empty",
        f"error: row 5, column image, value 'missing.jpg': file not found (looked for {tmp_path / 'missing.jpg'}); "
        "fix: correct the path; relative paths start at the CSV's folder",
        "error: row 6, column sku, value 'A': duplicate SKU, already used on row 2; "
        "fix: give every row a unique SKU, or delete the duplicate row",
    ]
    assert summary(write_text(tmp_path / "c.tsv", ROWS, "\t")) == reference
    assert summary(write_xlsx(tmp_path / "c.xlsx", ROWS)) == reference
    # Parquet has no blank rows of its own: a row of nulls stands in for one
    assert summary(write_parquet(tmp_path / "c.parquet", ROWS)) == reference


def test_an_xlsx_catalog_with_a_bad_row_gets_the_csv_message(tmp_path: Path) -> None:
    write_photo(tmp_path / "a.jpg", (128, 128))
    good = {"sku": "G", "image": "a.jpg"}
    bad = {"sku": "BAD", "image": "a.jpg", "seed": "minus one"}
    csv_catalog = load_catalog(write_catalog(tmp_path, [good, bad]), min_side=64)
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["sku", "image", "seed"])
    book.active.append(["G", "a.jpg", None])
    book.active.append(["BAD", "a.jpg", "minus one"])
    book.save(tmp_path / "catalog.xlsx")
    xlsx_catalog = load_catalog(tmp_path / "catalog.xlsx", min_side=64)
    assert (
        xlsx_catalog.messages()
        == csv_catalog.messages()
        == [
            "error: row 3, column seed, value 'minus one': not a whole number; fix: use a whole number from 0 "
            "to 2^63-1, or leave it empty"
        ]
    )
    assert [r.sku for r in xlsx_catalog.valid_rows] == ["G"]
    assert xlsx_catalog.valid_rows[0].image_sha256 == csv_catalog.valid_rows[0].image_sha256


def test_unreadable_files_say_how_to_fix_them(tmp_path: Path) -> None:
    (tmp_path / "broken.xlsx").write_bytes(b"not a zip file")
    with pytest.raises(CatalogError, match=r"is not a readable XLSX workbook .*fix: save it again"):
        load_catalog(tmp_path / "broken.xlsx")
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(CatalogError, match=r"old \.xls workbook; fix: save it as \.xlsx"):
        load_catalog(tmp_path / "old.xls")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 nope")
    with pytest.raises(CatalogError, match=r"is not a readable Parquet file"):
        load_catalog(tmp_path / "broken.parquet")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CatalogError, match=r"is empty; fix: add a header row: sku,image"):
        load_catalog(tmp_path / "empty.csv")
    (tmp_path / "latin1.csv").write_bytes("sku,image\ncafé,a.jpg\n".encode("latin-1"))
    with pytest.raises(CatalogError, match=r"is not UTF-8 text .*fix: save it as UTF-8 CSV"):
        load_catalog(tmp_path / "latin1.csv")


def test_cells_past_the_header_are_ignored_as_before(tmp_path: Path) -> None:
    write_photo(tmp_path / "a.jpg", (128, 128))
    (tmp_path / "c.csv").write_text("sku,image\nA,a.jpg,extra,cells\nB\n", encoding="utf-8")
    catalog = load_catalog(tmp_path / "c.csv", min_side=64)
    assert [(r.sku, r.row_number, r.image) for r in catalog.rows] == [("A", 2, "a.jpg"), ("B", 3, "")]
