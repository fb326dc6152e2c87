"""Side-by-side speed measurements of this project (see benchmarks/run.py)."""
