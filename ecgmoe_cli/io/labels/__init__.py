"""Where a record's targets and fold come from: `detect.open_label_source` picks the source,
`base` holds what the sources share, and each source (PTB-XL, MIMIC-IV-ECG, CinC headers,
CinC 2017, a labels.csv, .atr beat annotations) has its own module."""
