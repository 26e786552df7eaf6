"""``strangler-bridge doctor``: check the configuration before the first job."""

from __future__ import annotations

import sys

import click

from strangler_bridge.doctor import TIMEOUT_S, report, run_checks
from strangler_bridge.settings import Settings


@click.command()
@click.option("--timeout", default=TIMEOUT_S, show_default=True, type=float, help="Seconds each check may take.")
def doctor(timeout: float) -> None:
    """Check every configured provider (URL, path and key), whether STRANGLER_PUBLIC_URL answers from here, and
    whether provider outputs would pass the fetch rules. One line per finding; a problem names the setting to
    change, and makes the exit code 1."""
    findings = run_checks(Settings.load(), timeout_s=timeout)
    click.echo(report(findings))
    problems = sum(finding.problem for finding in findings)
    if problems:
        click.echo(f"{problems} problem(s) found", err=True)
        sys.exit(1)
