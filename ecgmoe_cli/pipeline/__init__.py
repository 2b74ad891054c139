"""One record's path from a file to its row: prepare (io + signal), the worker pool, and the
two jobs built on them, `preprocess` (a dataset) and `predict` (a Parquet report)."""
