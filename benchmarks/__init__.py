"""`make bench`: campaign-sync's performance suite (see benchmarks/run.py)."""
