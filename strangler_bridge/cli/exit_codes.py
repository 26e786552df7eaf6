"""The console script's exit codes, so scripts and CI can tell a typo from an outage from a failed job."""

from __future__ import annotations

OK = 0
#: Bad arguments, a bad input document or a missing/malformed setting: fix the command or the environment.
USAGE = 2
#: The service, Redis or another dependency is unreachable or answered with an error: retrying may help.
SERVICE = 3
#: The job ran and ended failed or cancelled (``jobs submit|watch|retry``).
JOB_FAILED = 4
#: Interrupted (Ctrl-C).
INTERRUPTED = 130

HELP = (
    "Exit codes: 0 success; 2 usage or configuration error; 3 service or dependency (Redis) unreachable or "
    "answering with an error; 4 the job failed or was cancelled; 130 interrupted; `doctor` exits 1 when it finds "
    "a problem."
)
