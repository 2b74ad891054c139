"""Rows of Python values -> an Arrow table, built from NumPy buffers.

`pa.Table.from_pylist` does the same, but pyarrow's conversion of Python values imports pandas
(to recognise its types) the first time it runs: 0.36-0.42 CPU-s in the process that writes the
report, for a library the report never uses. Only the column types our tables hold are
supported: strings, fixed-width numbers and booleans, any of them null.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

_NUMERIC = {pa.float32(): np.float32, pa.float64(): np.float64,
            pa.int32(): np.int32, pa.int64(): np.int64}


def rows_to_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """As `pa.Table.from_pylist(rows, schema=schema)`: a missing key or None is null."""
    return pa.Table.from_arrays([_column([r.get(f.name) for r in rows], f) for f in schema],
                                schema=schema)


def _column(values: list[Any], field: pa.Field) -> pa.Array:
    n = len(values)
    valid = np.fromiter((v is not None for v in values), bool, n)
    nulls = n - int(valid.sum())
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    if field.type == pa.string():
        try:
            data = [b"" if v is None else v.encode("utf-8") for v in values]
        except AttributeError:
            raise TypeError(f"column {field.name}: expected str values") from None
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum([len(b) for b in data], out=offsets[1:])
        buffers = [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
    elif field.type in _NUMERIC:
        zero = _NUMERIC[field.type](0)
        buffers = [bitmap, pa.py_buffer(np.array([zero if v is None else v for v in values],
                                                 dtype=_NUMERIC[field.type]))]
    elif field.type == pa.bool_():  # Arrow packs booleans into bits, as the validity bitmap
        bits = np.fromiter((bool(v) for v in values), bool, n)
        buffers = [bitmap, pa.py_buffer(np.packbits(bits, bitorder="little"))]
    else:
        raise TypeError(f"column {field.name}: type {field.type} is not supported")
    return pa.Array.from_buffers(field.type, n, buffers, null_count=nulls)
