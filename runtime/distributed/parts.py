"""Result output of a distributed run: a folder of atomically written parts, Parquet or JSON lines.

``--out results.parquet`` (or ``.pq``) is a folder ``results.parquet/`` of ``part-RUN-NNNNN.parquet`` files;
``--out results.jsonl`` (or ``.ndjson``) a folder of ``part-RUN-NNNNN.jsonl`` files, one JSON object per line.
Each part holds the rows of :func:`fastsam_onnx.distributed.schema` and is written to a hidden temporary file
and renamed into place when complete (:mod:`fastsam_onnx.fileio`), so a killed run leaves only whole parts
(and at most a ``.part-*.tmp`` file, which readers skip: pyarrow ignores names starting with ``.`` or ``_``).
``RUN`` is the run's start time (UTC, milliseconds) and a random tag, so a resumed run's parts sort after the
earlier ones.

Both read back with ``pandas.read_parquet("results.parquet")`` / ``pyarrow.parquet.read_table`` or
``cat results.jsonl/*.jsonl``, or :func:`read_results`. :func:`existing_paths` lists the images already in an
output folder (``--skip-existing``).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..errors import BadArgumentError

__all__ = ["FORMATS", "output_format", "part_files", "existing_paths", "read_results", "PartWriter"]

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
"""``--out`` extension → output format."""
_EXT = {"parquet": ".parquet", "jsonl": ".jsonl"}


def output_format(out: str | os.PathLike[str]) -> str:
    """"parquet" or "jsonl" from ``out``'s extension; anything else raises :class:`BadArgumentError`."""
    fmt = FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise BadArgumentError(
            f"--out {out}: the results format comes from the extension: .parquet / .pq (Parquet) or .jsonl / .ndjson (JSON lines)"
        )
    return fmt


def part_files(out: str | os.PathLike[str], fmt: str) -> list[Path]:
    """The finished parts under ``out`` (sorted; hidden ``.`` / ``_`` files and other extensions left out)."""
    d = Path(out)
    if not d.is_dir():
        return []
    ext = _EXT[fmt]
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix == ext and p.name[0] not in "._")


class _BadRow(ValueError):
    """A row of a part that is not a result row (message: where and why)."""


def _check_path(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value:
        raise _BadRow(f"{where}: 'path' is {type(value).__name__ if value is not None else 'null'}"
                      f"{' (empty)' if value == '' else ''}, not the image's path")


def _read_part(path: Path, fmt: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """The rows of one part, checked: every row an object of :func:`~.rows.schema`'s columns and types (JSON lines;
    a Parquet part: its columns) with a non-empty ``path`` string; else :class:`_BadRow` naming the row."""
    from .rows import COLUMNS

    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise _BadRow(f"not a results part: no column {', '.join(missing)}")
        table = pq.read_table(path, columns=columns)
        if "path" in table.column_names:
            if not pa.types.is_string(table.schema.field("path").type) and not pa.types.is_large_string(table.schema.field("path").type):
                raise _BadRow(f"column 'path' holds {table.schema.field('path').type}, not strings")
            for i, value in enumerate(table.column("path").to_pylist()):
                _check_path(value, f"row {i + 1}")
        return table.to_pylist()
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except RecursionError:
            raise _BadRow(f"line {n}: nested too deeply") from None
        except ValueError as e:
            raise _BadRow(f"line {n}: not JSON ({e})") from None
        if not isinstance(row, dict):
            raise _BadRow(f"line {n}: a JSON {type(row).__name__}, not a row object")
        _check_path(row.get("path"), f"line {n}")
        rows.append(row)
    _check_types(rows, path)
    return rows if columns is None else [{k: r.get(k) for k in columns} for r in rows]


def _check_types(rows: list[dict[str, Any]], part: Path) -> None:
    """Every JSON-lines row converts to :func:`~.rows.schema` (else :class:`_BadRow` naming the first one that does not)."""
    import pyarrow as pa

    from .rows import schema

    errors = (pa.ArrowException, ValueError, TypeError, OverflowError, RecursionError)
    try:
        pa.Table.from_pylist(rows, schema=schema())
        return
    except errors:
        pass
    for n, row in enumerate(rows, 1):  # the first row that does not fit, for the message
        try:
            pa.Table.from_pylist([row], schema=schema())
        except errors as e:
            raise _BadRow(f"row {n} ({row['path']!r}): a field of the wrong type: {' '.join(str(e).split())[:120]}") from None
    raise _BadRow("rows that do not fit the results schema")


def read_results(out: str | os.PathLike[str], columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Every row of an output folder (format from its extension), part by part; a part that cannot be read, or
    one with a row that is not a result row (see :func:`_read_part`), raises :class:`BadArgumentError` naming
    the part and the row."""
    fmt = output_format(out)
    rows: list[dict[str, Any]] = []
    for part in part_files(out, fmt):
        try:
            rows += _read_part(part, fmt, columns)
        except _BadRow as e:
            raise BadArgumentError(f"results part {part}: {' '.join(str(e).split())[:300]} (fix or remove the part)") from None
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise BadArgumentError(f"cannot read results part {part}: {' '.join(str(e).split())[:200]} (remove it)") from None
    return rows


def existing_paths(out: str | os.PathLike[str]) -> set[str]:
    """The ``path`` of every row already in ``out`` (bad images included: they are not redone); a part that is
    not whole results raises :class:`BadArgumentError` (:func:`read_results`)."""
    return {r["path"] for r in read_results(out, columns=["path"])}


def _remove_stale_temporaries(d: Path) -> None:
    for p in d.glob(".part-*.tmp*"):
        try:
            p.unlink()
        except OSError:
            pass


class PartWriter:
    """Write result rows (``pyarrow.Table`` batches) to ``out`` as parts of at most ``rows_per_part`` rows, or
    fewer when ``seconds_per_part`` passed since the last part (so a long run keeps its output on disk).

    A row whose ``path`` was already written (by this writer or in ``seen``) is dropped and counted in
    :attr:`duplicates`. Use as a context manager: the last part is written on exit, an exception included.
    """

    def __init__(self, out: str | os.PathLike[str], fmt: str, rows_per_part: int = 1000, seconds_per_part: float = 30.0,
                 seen: Iterable[str] = ()) -> None:
        self.dir = Path(out)
        self.fmt = fmt
        self.rows_per_part = rows_per_part
        self.seconds_per_part = seconds_per_part
        now = time.time()
        self.run = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}-" + uuid.uuid4().hex[:6]
        self.seen = set(seen)
        self.parts: list[Path] = []
        self.rows = self.duplicates = 0
        self._buffer: list[Any] = []
        self._buffered = 0
        self._last = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(self.dir)

    def add(self, table) -> list[dict[str, Any]]:
        """Buffer one batch (a ``pyarrow.Table`` of result rows); returns its new rows (duplicates dropped) as dicts of path, width, height, error and the instance count."""
        import pyarrow as pa

        paths = table.column("path").to_pylist()
        keep = []
        for i, p in enumerate(paths):
            if p not in self.seen:
                self.seen.add(p)
                keep.append(i)
        self.duplicates += len(paths) - len(keep)
        if len(keep) < len(paths):
            table = table.take(pa.array(keep, pa.int64()))
        if table.num_rows:
            self._buffer.append(table)
            self._buffered += table.num_rows
        if self._buffered >= self.rows_per_part or time.monotonic() - self._last >= self.seconds_per_part:
            self.flush()
        if not table.num_rows:
            return []
        import pyarrow.compute as pc

        rows = table.select(["path", "width", "height", "error"]).to_pylist()
        for r, n in zip(rows, pc.list_value_length(table.column("instances")).to_pylist()):
            r["instances"] = n or 0
        return rows

    def flush(self) -> None:
        """Write the buffered rows as one part (nothing when empty)."""
        import pyarrow as pa

        from ..fileio import atomic_path, atomic_write_text
        from .rows import schema

        self._last = time.monotonic()
        if not self._buffer:
            return
        table = pa.concat_tables(self._buffer).cast(schema())
        dest = self.dir / f"part-{self.run}-{len(self.parts):05d}{_EXT[self.fmt]}"
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            with atomic_path(dest) as tmp:
                pq.write_table(table, tmp)
        else:
            lines = (json.dumps(r, separators=(",", ":")) for r in table.to_pylist())
            atomic_write_text(dest, "".join(line + "\n" for line in lines))
        self.parts.append(dest)
        self.rows += table.num_rows
        self._buffer, self._buffered = [], 0

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()

    def write_all(self, batches: Iterator[Any], on_rows: Callable[[list[dict[str, Any]]], None] | None = None) -> "PartWriter":
        """Write every batch of ``batches`` (e.g. ``ds.iter_batches(batch_format="pyarrow", batch_size=None)``),
        calling ``on_rows`` with each batch's new rows (as :meth:`add` returns them)."""
        with self:
            for table in batches:
                rows = self.add(table)
                if on_rows is not None:
                    on_rows(rows)
        return self
