"""ecgmoe: ECG-MoE from folders of ECG records to Parquet reports."""

__version__ = "0.1.0"
