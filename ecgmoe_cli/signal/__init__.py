"""Signal processing on NumPy arrays: leads, cleaning, beats, the preprocessing spec. No torch."""
