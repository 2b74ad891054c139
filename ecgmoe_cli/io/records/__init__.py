"""Record files in, `Record`s out: discovery and content sniffing, then one reader per format
(`read.read_record` is the entry point). Nothing here filters or resamples a signal."""
