"""Readers and writers: records in, datasets and reports out. No signal processing here."""
