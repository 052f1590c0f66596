"""Streaming readers: a file (CSV, JSON Lines, Parquet; plain or gzip) as numbered rows of cells.

Nothing here holds more than one chunk of a file: bytes are read in blocks, decoded
incrementally (so a bad byte is named by its offset in the file) and handed to the parser line
by line. Cells come out as they were written: strings from CSV, JSON values from JSON Lines.
"""

import codecs
import csv
import gzip
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

BLOCK = 1 << 20  # bytes read at a time
csv.field_size_limit(16 << 20)  # one cell (a long actions list) may be large, not unbounded

FORMATS = ("csv", "jsonl", "parquet")


class FileError(ValueError):
    """The file as a whole cannot be read (encoding, malformed CSV, no header): nothing imports."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(slots=True)  # not frozen: a frozen dataclass takes three times as long to build, per row
class Row:
    line: int  # line of the file (CSV: where the record starts; JSON Lines: the line; Parquet: row + 1)
    cells: dict[str, Any]  # header name as written -> value
    extra: bool = False  # more cells than the header has names (CSV)
    missing: bool = False  # fewer cells than the header has names (CSV)


def file_format(path: Path) -> str:
    """csv, jsonl or parquet, from the name (`.gz` is looked through)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in (".csv", ".txt", ".tsv"):
        return "csv"
    if last in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if last in (".parquet", ".pq"):
        return "parquet"
    raise FileError(f"{path.name}: unknown format (expected .csv, .jsonl or .parquet, optionally .gz).")


class _Progress:
    """Counts the bytes read from the file on disk (compressed bytes for .gz) for the progress bar."""

    def __init__(self, raw: BinaryIO, report: Callable[[int], None] | None) -> None:
        self.raw, self.report, self.seen = raw, report, 0

    def tick(self) -> None:
        if self.report is not None:
            position = self.raw.tell()
            if position > self.seen:
                self.report(position - self.seen)
                self.seen = position


def _text_lines(stream: BinaryIO, encoding: str, progress: _Progress) -> Iterator[str]:
    """Decoded lines (ending with "\\n" but the last), decoding block by block.

    UTF-8 is strict: a byte that is not UTF-8 stops the file with its offset (a Latin-1 export
    is then imported with `--encoding latin-1`). A byte order mark is dropped.
    """
    name = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    decoder = codecs.getincrementaldecoder(name)(errors="strict")
    offset = 0  # bytes handed to the decoder so far
    pending = ""
    while True:
        block = stream.read(BLOCK)
        final = not block
        buffered = len(decoder.getstate()[0])
        try:
            text = decoder.decode(block, final=final)
        except UnicodeDecodeError as error:
            at = offset - buffered + error.start
            raise FileError(
                f"byte {at}: not valid {encoding.upper()} text"
                f" (byte 0x{error.object[error.start : error.start + 1].hex()})."
                " Save the file as UTF-8, or import it with --encoding latin-1 if it is Latin-1."
            ) from None
        offset += len(block)
        progress.tick()
        if "\x00" in text:
            raise FileError(f"byte {offset - len(block) + text.index(chr(0))}: a NUL byte (not a text file?).")
        pending += text
        if final:
            break
        if "\n" not in pending:
            continue
        lines = pending.split("\n")
        pending = lines.pop()
        for line in lines:
            yield line + "\n"
    if pending:
        yield pending


def _csv_rows(lines: Iterator[str]) -> Iterator[Row | list[str]]:
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise FileError(f"line {reader.line_num}: malformed CSV ({error}).", line=reader.line_num) from None
    if not header or not any(cell.strip() for cell in header):
        raise FileError("The file is empty or its first line (the header row) is blank.", line=1)
    yield header
    width = len(header)
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise FileError(f"line {line}: malformed CSV ({error}).", line=line) from None
        if cells or reader.line_num > line:  # skip blank lines
            if len(cells) == 1 and cells[0] == "" and width > 1:
                line = reader.line_num + 1
                continue
            yield Row(
                line,
                dict(zip(header, cells, strict=False)),
                extra=len(cells) > width,
                missing=len(cells) < width,
            )
        line = reader.line_num + 1


def _jsonl_rows(lines: Iterator[str]) -> Iterator[Row | list[str]]:
    header: list[str] | None = None
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise FileError(f"line {number}: not a JSON object ({error}).", line=number) from None
        if not isinstance(value, dict):
            raise FileError(f"line {number}: each line must be a JSON object, not {type(value).__name__}.", line=number)
        if header is None:
            header = list(value)
            yield header
        yield Row(number, value)
    if header is None:
        raise FileError("The file is empty.", line=1)


def _parquet_rows(path: Path, report: Callable[[int], None] | None) -> Iterator[Row | list[str]]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise FileError(f"not a readable Parquet file ({error}).") from None
    header = list(parquet.schema_arrow.names)
    yield header
    number = 0
    size = os.path.getsize(path)
    groups = max(parquet.num_row_groups, 1)
    for group in range(parquet.num_row_groups):
        for batch in parquet.iter_batches(row_groups=[group], batch_size=10_000):
            for record in batch.to_pylist():
                number += 1
                yield Row(number + 1, record)
        if report is not None:
            report(size // groups)


def read_rows(
    path: Path, *, encoding: str = "utf-8", report: Callable[[int], None] | None = None
) -> Iterator[Row | list[str]]:
    """The header (a list of names) first, then every data row. Raises FileError when the file
    itself is unreadable; a row's own problems (a bad value) are for the caller to judge."""
    fmt = file_format(path)
    if fmt == "parquet":
        yield from _parquet_rows(path, report)
        return
    with open(path, "rb") as raw:
        stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if path.suffix.lower() == ".gz" else raw
        progress = _Progress(raw, report)
        lines = _text_lines(stream, encoding, progress)
        try:
            yield from (_csv_rows if fmt == "csv" else _jsonl_rows)(lines)
        except (gzip.BadGzipFile, EOFError, OSError) as error:
            raise FileError(f"not a readable gzip file ({error}).") from None


def writer_for(fmt: str, stream: io.TextIOBase, columns: list[str]) -> Callable[[list[Any]], None]:
    """A row writer in `fmt` (csv or jsonl) for the exporter; values are already text or JSON-able."""
    if fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)

        def write_csv(values: list[Any]) -> None:
            writer.writerow(
                [
                    ""
                    if v is None
                    else ("true" if v else "false")
                    if isinstance(v, bool)
                    else json.dumps(v, ensure_ascii=False, separators=(",", ":"))
                    if isinstance(v, dict | list)
                    else v
                    for v in values
                ]
            )

        return write_csv

    def write_jsonl(values: list[Any]) -> None:
        stream.write(json.dumps(dict(zip(columns, values, strict=True)), ensure_ascii=False, default=str) + "\n")

    return write_jsonl
