"""Parquet reports written while a run goes on: constant memory, atomic, resumable, shardable.

    -o out.parquet   parts land in out.parquet.partial/ as they complete; the last step merges
                     them into out.parquet (temp file + rename), so a killed run never leaves a
                     half file under the final name, and --resume picks the parts up.
    -o outdir/       a Parquet dataset: outdir/part-<shard>-<seq>.parquet, each renamed into
                     place when complete; pandas, pyarrow, DuckDB and Spark read it as one table.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ecgmoe_cli.errors import EcgMoeError
from ecgmoe_cli.io.arrow_table import rows_to_table
from ecgmoe_cli.io.files import atomic_write
from ecgmoe_cli.io.outputs import check_report_target


def is_single_file(out: Path) -> bool:
    """`-o x.parquet` (not a folder): one file merged at the end; anything else is a dataset
    folder of part files."""
    return out.suffix == ".parquet" and not out.is_dir()


def source_stamp(path: str | Path) -> str:
    """Size and modification time of a record's files (a WFDB header with its `.dat`/`.mat`):
    what `--resume` compares to notice a record changed since its row was written."""
    p = Path(path)
    files = [p] + ([p.with_suffix(s) for s in (".dat", ".mat")] if p.suffix == ".hea" else [])
    stamps = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        stamps.append(f"{st.st_size}:{st.st_mtime_ns}")
    return ";".join(stamps)


def shard_of(key: str, n: int) -> int:
    """Deterministic shard of a record key: the same on every machine and Python run."""
    digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % n


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise EcgMoeError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise EcgMoeError(f"--shard {text}: need 0 <= i < n")
    return i, n


class ReportWriter:
    """Streams rows into Parquet row groups; parts become visible only when complete."""

    def __init__(
        self,
        out: Path,
        schema: pa.Schema,
        *,
        shard: tuple[int, int] = (0, 1),
        rows_per_group: int = 512,
        rows_per_part: int = 8192,
        resume: bool = False,
    ) -> None:
        self.out = Path(out)
        self.schema = schema
        self.as_dataset = not is_single_file(self.out)
        self.parts_dir = (self.out if self.as_dataset
                          else self.out.with_name(self.out.name + ".partial"))
        self.prefix = f"part-{shard[0]:05d}-of-{shard[1]:05d}"
        self.rows_per_group = rows_per_group
        self.rows_per_part = rows_per_part
        self.resume = resume
        self._seq = 0
        self._opened = False  # nothing touched on disk until the first rows (or close)
        self._made_dir = False
        self._buffer: list[dict[str, object]] = []
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self._rows_in_part = 0
        self.rows_written = 0
        self._drop: set[str] = set()  # keys whose earlier rows go (--resume: changed, vanished)
        self._drop_from: set[Path] = set()  # the files holding those earlier rows

    def check_target(self, overwrite: bool) -> None:
        """Refuse, before anything is written, an `out` that is not a report this tool wrote,
        or an existing report without --overwrite / --resume."""
        check_report_target(self.out, self.parts() if self.as_dataset else [],
                            overwrite=overwrite, resume=self.resume)

    def _open(self) -> None:
        """First write: a fresh run replaces this shard's earlier parts (other shards' stay)."""
        if self._opened:
            return
        self._opened = True
        if not self.resume:
            for part in self.parts():
                part.unlink()
        try:
            self._made_dir = not self.parts_dir.is_dir()
            self.parts_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise EcgMoeError(f"cannot write the report here ({e.strerror})", self.out) from None
        self._seq = len(self.parts())

    def status_counts(self) -> dict[str, int]:
        """Rows per status in the finished report (this shard's parts of a dataset): after
        --resume, the whole report, not only this run's records."""
        from collections import Counter

        sources = self.parts() if self.as_dataset else [self.out]
        return dict(Counter(s for src in sources
                            for s in pq.read_table(src, columns=["status"]).column(0).to_pylist()))

    def parts(self) -> list[Path]:
        """This shard's sealed part files, in order."""
        if not self.parts_dir.is_dir():
            return []
        return sorted(self.parts_dir.glob(f"{self.prefix}-*.parquet"))

    def done_keys(self, column: str = "path") -> dict[str, str]:
        """Keys already in completed parts (and in a finished single-file report), each with
        its `source_stamp`: for --resume.

        A part with other columns (another --tasks, --explain or weights) is refused: its rows
        could not be merged with this run's."""
        sources = self._sources()
        keys: dict[str, str] = {}
        for src in sources:
            try:
                pf = pq.ParquetFile(src)
                names = pf.schema_arrow.names
                if names != self.schema.names:
                    extra = sorted(set(names) - set(self.schema.names))
                    lacking = sorted(set(self.schema.names) - set(names))
                    raise EcgMoeError(
                        f"cannot resume: it was written with other columns (extra "
                        f"{extra[:4]}, lacking {lacking[:4]}: other --tasks, --explain or "
                        f"weights?); resume with the first run's options, or start again "
                        f"with --overwrite", src)
                t = pf.read(columns=[column, "source_stamp"])
                keys.update(zip(t.column(column).to_pylist(),
                                t.column("source_stamp").to_pylist()))
            except (OSError, pa.ArrowException) as e:
                raise EcgMoeError(f"cannot resume from {src}: {e}") from None
        return keys

    def _sources(self) -> list[Path]:
        return self.parts() + ([self.out] if not self.as_dataset and self.out.is_file() else [])

    def drop(self, keys: set[str]) -> None:
        """Leave the earlier rows of `keys` out of the report (--resume: records that changed
        or vanished since): filtered when the parts are merged, or their parts rewritten."""
        self._drop |= keys
        self._drop_from = set(self._sources())

    def _kept(self, table: pa.Table, src: Path) -> pa.Table:
        if not self._drop or src not in self._drop_from:
            return table
        import pyarrow.compute as pc

        return table.filter(pc.invert(pc.is_in(table.column("path"),
                                               pa.array(sorted(self._drop), pa.string()))))

    def _rewrite_dropped_parts(self) -> None:
        """Dataset output: each earlier part holding dropped rows rewritten without them."""
        for src in sorted(p for p in self._drop_from if p.is_file()):
            table = pq.read_table(src)
            kept = self._kept(table, src)
            if kept.num_rows == table.num_rows:
                continue
            tmp = src.with_name(f".{src.name}.tmp-{os.getpid()}")  # a name _report_part knows
            pq.write_table(kept, tmp, compression="zstd")
            os.replace(tmp, src)

    def write(self, row: dict[str, object]) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= self.rows_per_group:
            self._flush()

    def write_table(self, table: pa.Table) -> None:
        """Many rows at once (one record's beats), after the buffered ones; a part is sealed
        only between tables, so a record's rows never straddle a sealed and an open part."""
        self._flush()
        if table.num_rows:
            self._write_arrow(table)

    def _flush(self) -> None:
        if not self._buffer:
            return
        self._write_arrow(rows_to_table(self._buffer, self.schema))
        self._buffer.clear()

    def _write_arrow(self, table: pa.Table) -> None:
        try:
            if self._writer is None:
                self._open()
                name = f".{self.prefix}-{self._seq:06d}.parquet.tmp-{os.getpid()}"
                self._tmp = self.parts_dir / name
                self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
            self._writer.write_table(table, row_group_size=max(self.rows_per_group, 1))
        except OSError as e:  # read-only folder, full disk: one line; abort() cleans up
            raise EcgMoeError(f"cannot write the report ({e.strerror or e})", self.out) from None
        self._rows_in_part += table.num_rows
        self.rows_written += table.num_rows
        if self._rows_in_part >= self.rows_per_part:
            self._close_part()

    def _close_part(self) -> None:
        if self._writer is None or self._tmp is None:
            return
        self._writer.close()
        os.replace(self._tmp, self.parts_dir / f"{self.prefix}-{self._seq:06d}.parquet")
        self._writer, self._tmp = None, None
        self._seq += 1
        self._rows_in_part = 0

    def close(self) -> Path:
        """Finish the run: seal the open part; for a single file, merge the parts into it."""
        self._open()
        self._flush()
        self._close_part()
        if self.as_dataset:
            self._rewrite_dropped_parts()
            return self.out
        # a finished report is carried over only when resuming; a fresh run replaces it
        sources = ([self.out] if self.resume and self.out.is_file() else []) + self.parts()

        def merge(tmp: Path) -> None:
            with pq.ParquetWriter(tmp, self.schema, compression="zstd") as writer:
                for src in sources:
                    pf = pq.ParquetFile(src)
                    for i in range(pf.num_row_groups):  # row group by row group: constant memory
                        writer.write_table(self._kept(pf.read_row_group(i), src)
                                           .cast(self.schema))

        try:
            atomic_write(self.out, merge)
        except OSError as e:  # a full disk: the parts stay for --resume, the temp file goes
            raise EcgMoeError(f"cannot write the report ({e.strerror or e})", self.out) from None
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return self.out

    def abort(self) -> None:
        """Drop the open (incomplete) part; completed parts stay for --resume, and a folder
        this run made and left empty goes."""
        if self._writer is not None:
            self._writer.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        self._writer, self._tmp = None, None
        if self._made_dir and self.parts_dir.is_dir() and not any(self.parts_dir.iterdir()):
            self.parts_dir.rmdir()
