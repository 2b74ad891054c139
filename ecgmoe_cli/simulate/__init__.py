"""The synthetic 12-lead ECG generator."""
