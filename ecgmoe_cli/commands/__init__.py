"""One module per CLI command: parse arguments, call core functions, print."""
