"""The fault matrix (issue 8): pipeline jobs through the real stack while providers, workers, Redis and the API fail.

Run it as a script for the published figures (``python -m tests.faults.matrix --jobs 20``) or through pytest at a
reduced size (``pytest -m faults``; ``STRANGLER_FAULT_JOBS`` sets the size).
"""
