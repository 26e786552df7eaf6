"""What every benchmark part shares: options, figures and their noise, the table, the dev stack, RSS sampling."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from strangler_bridge.cli.devstack import DevStack
from strangler_bridge.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"completed", "failed", "cancelled"}


# --- options ---------------------------------------------------------------------------------------------------
def parser(description: str) -> argparse.ArgumentParser:
    """The options every part takes."""
    args = argparse.ArgumentParser(description=description)
    args.add_argument("--quick", action="store_true", help="a smoke run of a few seconds (figures are not meaningful)")
    args.add_argument(
        "--runs", type=int, default=None, help="repetitions of each measured figure (default: 3; quick: 1)"
    )
    args.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    return args


def runs_of(options: argparse.Namespace, full: int = 3) -> int:
    """How many times to repeat a measurement."""
    return int(options.runs or (1 if options.quick else full))


# --- figures ---------------------------------------------------------------------------------------------------
@dataclass
class Figure:
    """One reported figure: the value of each run, the baseline measured beside it, and the target."""

    part: str
    name: str
    unit: str
    runs: list[float]
    target: str = ""
    target_op: str = ""  # "<=" or ">=" against target_value; empty: no target
    target_value: float = 0.0
    baseline: str = ""
    note: str = ""

    @property
    def median(self) -> float:
        """Median over the runs."""
        return statistics.median(self.runs) if self.runs else float("nan")

    @property
    def spread_pct(self) -> float:
        """(max - min) / median in percent: how noisy the runs were."""
        if len(self.runs) < 2 or not self.median:
            return 0.0
        return 100.0 * (max(self.runs) - min(self.runs)) / abs(self.median)

    @property
    def met(self) -> bool | None:
        """Whether the median meets the target (None if there is none)."""
        if not self.target_op or not self.runs:
            return None
        if self.target_op == "<=":
            return self.median <= self.target_value
        return self.median >= self.target_value

    def to_json(self) -> dict[str, Any]:
        """The figure with its derived values."""
        return {**asdict(self), "median": self.median, "spread_pct": self.spread_pct, "met": self.met}


def figure(part: str, name: str, unit: str, runs: list[float], target: str = "", **extra: Any) -> Figure:
    """A figure; ``target`` like ``"<= 1.10"`` is parsed into an operator and a value."""
    op, value = "", 0.0
    if target:
        op, text = target.split(maxsplit=1)
        value = float(text)
    return Figure(part, name, unit, [float(r) for r in runs], target, op, value, **extra)


def fmt(value: float) -> str:
    """A compact number."""
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def table(figures: list[Figure]) -> str:
    """The figures as a fixed-width text table."""
    head = ("part", "figure", "median", "unit", "spread", "n", "baseline", "target", "met")
    rows = [head]
    for f in figures:
        met = {True: "yes", False: "NO", None: ""}[f.met]
        rows.append(
            (f.part, f.name, fmt(f.median), f.unit, f"{f.spread_pct:.0f}%", str(len(f.runs)), f.baseline, f.target, met)
        )
    widths = [min(max(len(r[i]) for r in rows), 60) for i in range(len(head))]
    lines = ["  ".join(cell[:60].ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def report(part: str, figures: list[Figure], options: argparse.Namespace, extra: dict[str, Any] | None = None) -> None:
    """Print the part's table and, with ``--json``, write its figures."""
    print(f"\n== {part}{' (quick: not meaningful)' if options.quick else ''}")
    print(table(figures), flush=True)
    if options.json:
        body = {"part": part, "quick": options.quick, "figures": [f.to_json() for f in figures], "extra": extra or {}}
        options.json.write_text(json.dumps(body, indent=2))


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "nproc": str(os.cpu_count()),
        "free": free,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "work_dir": ".bench-work/" if work_base().is_relative_to(ROOT) else "the system's temporary directory",
        "file_create_cpu_ms": f"{_create_costs()[work_base()]:.3f}",
    }


# --- the stack -------------------------------------------------------------------------------------------------
def bench_settings(workdir: Path, **overrides: Any) -> Settings:
    """Settings for a private stack: its own embedded Redis (never the shared one) and artifact directory.

    Reuse is off unless a part turns it on (benchmark 8): the parts send the same texts job after job, and they
    measure what paid work costs, beside baselines that pay for everything.
    """
    values: dict[str, Any] = {
        "redis_url": None,
        "redis_prefix": "bench",
        "artifacts_dir": workdir / "artifacts",
        "reuse": False,
        **overrides,
    }
    return Settings.load(**values)


@contextlib.contextmanager
def dev_stack(
    workdir: Path,
    *,
    workers: int,
    runpod: dict[str, Any],
    runware: dict[str, Any],
    video: dict[str, Any],
    **settings: Any,
) -> Iterator[DevStack]:
    """A started :class:`DevStack`; on failure the tail of its logs is shown."""
    stack = DevStack(
        bench_settings(workdir, **settings),
        workers=workers,
        runpod=runpod,
        runware=runware,
        video=video,
        log_dir=workdir / "logs",
    )
    stack.start()
    try:
        yield stack
    except BaseException:
        for path in sorted((workdir / "logs").glob("*.log")):
            tail = path.read_text(errors="replace")[-1500:]
            if tail.strip():
                print(f"--- {path.name} ---\n{tail}", file=sys.stderr)
        raise
    finally:
        stack.stop()


def file_create_cpu_ms(base: Path, files: int = 200) -> float:
    """CPU milliseconds to create one empty file in a fresh directory under ``base``."""
    with tempfile.TemporaryDirectory(prefix="strangler-probe-", dir=base) as name:
        started = time.process_time()
        for n in range(files):
            os.close(os.open(os.path.join(name, str(n)), os.O_CREAT | os.O_WRONLY))
        return (time.process_time() - started) / files * 1e3


def work_base() -> Path:
    """Where the parts' work directories go: the system's temporary directory or ``.bench-work/`` in the
    repository, whichever creates files with less CPU.

    Every artifact the service stores is a new file, and on these machines creating one costs 20-40 times
    more CPU in some directories than in others on the same disk (/tmp on one machine, the repository's
    disk area on another; docs/BENCHMARKS.md). That cost would be charged to the service's figures.
    """
    costs = _create_costs()
    return min(costs, key=lambda base: costs[base])


@functools.cache
def _create_costs() -> dict[Path, float]:
    repo = ROOT / ".bench-work"
    repo.mkdir(exist_ok=True)
    return {base: file_create_cpu_ms(base) for base in (Path(tempfile.gettempdir()), repo)}


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    """A temporary directory for one part (artifacts, logs) under :func:`work_base`, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="strangler-bench-", dir=work_base()) as name:
        yield Path(name)


def restart_workers(stack: DevStack, count: int, **settings: Any) -> None:
    """Stop the stack's workers and start ``count`` new ones with changed settings."""
    for worker in stack.workers:
        worker.stop()
    stack.workers.clear()
    if settings:
        stack.settings = stack.settings.model_copy(update=settings)
    for _ in range(count):
        stack.add_worker()


# --- measuring -------------------------------------------------------------------------------------------------
@dataclass
class RssSampler:
    """Samples the resident memory of some processes every ``interval_s`` in a background thread."""

    pids: dict[str, int]
    interval_s: float = 0.05
    samples: dict[str, list[int]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        import psutil

        procs = {name: psutil.Process(pid) for name, pid in self.pids.items()}
        self.samples = {name: [] for name in procs}

        def run() -> None:
            while not self._stop.is_set():
                for name, proc in procs.items():
                    with contextlib.suppress(psutil.Error):
                        self.samples[name].append(proc.memory_info().rss)
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def peak_mb(self, name: str) -> float:
        """Highest RSS seen, in MB."""
        return max(self.samples.get(name) or [0]) / 1e6


class CpuMeter:
    """CPU seconds used by the stack's processes over a block: API, workers, this process, Redis."""

    def __init__(self, stack: DevStack) -> None:
        import psutil

        self.stack = stack
        procs = {"api": stack.api.proc.pid if stack.api else 0, "this process": os.getpid()}
        procs |= {f"worker{n}": w.proc.pid for n, w in enumerate(stack.workers)}
        self.procs = {name: psutil.Process(pid) for name, pid in procs.items() if pid}
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        import redis

        times = {name: sum(proc.cpu_times()[:2]) for name, proc in self.procs.items()}
        with redis.Redis.from_url(self.stack.settings.redis_url or "") as client:
            info: Any = client.info("cpu")
        times["redis"] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return times

    def __enter__(self) -> CpuMeter:
        self._start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        self.used = {name: end[name] - self._start[name] for name in end}

    @property
    def total(self) -> float:
        """CPU seconds of every measured process together."""
        return sum(self.used.values())

    def summary(self) -> str:
        """``name x.x s`` for each process, workers together."""
        workers = sum(v for k, v in self.used.items() if k.startswith("worker"))
        parts = {k: v for k, v in self.used.items() if not k.startswith("worker")} | {"workers": workers}
        return ", ".join(f"{k} {v:.1f} s" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))


def rss_mb(pid: int) -> float:
    """Current RSS of a process in MB."""
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 1e6


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.02) -> Any:
    """Poll ``condition`` until it is truthy; ``TimeoutError`` naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
