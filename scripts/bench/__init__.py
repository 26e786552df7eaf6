"""Benchmarks of issue 9 (and the Runware limiter benchmark of issue 6).

``python scripts/bench/run_all.py`` runs every part and prints one table; each part also runs alone
(``python scripts/bench/pipeline.py`` ...). ``--quick`` shrinks every part to a smoke test of a few seconds.
See docs/BENCHMARKS.md for what each figure means and the latest results.
"""
