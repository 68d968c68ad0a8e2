"""perdure benchmarks: ``python -m bench W1 [W2 ...] [--store sqlite|postgres]``."""
