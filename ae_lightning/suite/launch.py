"""Where and how runs execute: slots on GPUs or CPUs (``Slots``), one process per run (``python -m
ae_lightning.suite.run RUN_DIR``) with its output streamed to ``log.txt`` and, shortened, to the console; SIGUSR1 and
SIGTERM passed on to the runs. A crash or an OOM in one run is recorded as that run's failure; the others go on."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ae_lightning.files import write_json_atomic
from ae_lightning.suite.run import SHARING_ENV, write_run_files

EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Interrupt)\b")  # the last line of a traceback
ANSI_CODE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# what the console shows of a run: its epoch lines, the battery's stages and progress, warnings, a crash's last line
SHOWN_LINE = re.compile(r"^(epoch |evaluating |evaluation done|warning|Traceback|  \w+: \d+/\d+ )")


@dataclass
class Run:
    variant: str
    seed: int
    spec: dict[str, Any]
    directory: Path
    index: int = 0
    normal_class: int | None = None  # the one-class protocol's normal class of this run
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.variant}{'' if self.normal_class is None else f' class {self.normal_class}'} seed {self.seed}"


def processes_per_run(trainer: dict[str, Any], gpus: int) -> int:
    """How many processes one run starts, to share the slot's CPU threads among: under DDP one per device (``devices:
    N``, or every one of the slot's ``gpus`` for ``devices: -1``), else 1."""
    if "ddp" not in str(trainer.get("strategy", "")):
        return 1
    devices = trainer.get("devices", 1)
    if devices == -1:
        return max(1, gpus)
    return devices if isinstance(devices, int) and devices > 1 else 1


class Slots:
    """Where runs go, each slot holding one run at a time: ``runs_per_gpu`` slots on each GPU of ``gpus`` (their
    ``CUDA_VISIBLE_DEVICES`` entries, spread over the GPUs first), one slot with every GPU under ``ddp``, else
    ``parallel`` CPU slots. The ``cpus`` this process may use are shared out as threads among the slots."""

    def __init__(self, gpus: list[str], ddp: bool, parallel: int, runs_per_gpu: int = 1, cpus: int = 1) -> None:
        if gpus and not ddp:
            self.envs = [{"CUDA_VISIBLE_DEVICES": gpu} for _ in range(runs_per_gpu) for gpu in gpus]
        elif gpus:
            self.envs = [{"CUDA_VISIBLE_DEVICES": ",".join(gpus)}]
        else:
            self.envs = [{} for _ in range(parallel)]
        self.threads = max(1, cpus // len(self.envs))
        self.free = list(range(len(self.envs)))
        # runs training at once on one device: the report does not rank fit times measured while runs shared it
        self.sharing = (runs_per_gpu if not ddp else 1) if gpus else parallel

    def env(self, slot: int, trainer: dict[str, Any]) -> dict[str, str]:
        """The environment of a run in ``slot`` with these trainer settings (threads split among its processes)."""
        gpus = len([g for g in self.envs[slot].get("CUDA_VISIBLE_DEVICES", "").split(",") if g])
        threads = str(max(1, self.threads // processes_per_run(trainer, gpus)))
        sharing = str(min(self.sharing, len(self.envs)))
        return {**self.envs[slot], "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, SHARING_ENV: sharing}


def result_of(run: Run) -> dict[str, Any] | None:
    path = run.directory / "result.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def short_scores(metrics: dict[str, Any]) -> str:
    keys = ("test/mse", "test/noisy_psnr", "probe/accuracy", "test/nll_iw", "fit/seconds")
    return "  ".join(f"{k} {metrics[k]:.4g}" for k in keys if isinstance(metrics.get(k), (int, float)))


def stream(process: subprocess.Popen, prefix: str, log_path: Path) -> None:
    """Copy a run's output to its log file and, prefixed, to the console."""
    with open(log_path, "a") as log:
        for line in process.stdout:
            line = ANSI_CODE.sub("", line)  # colours are for terminals, not log files
            log.write(line)
            log.flush()
            if SHOWN_LINE.match(line) or EXCEPTION_LINE.match(line):
                print(f"{prefix} {line.rstrip()}", flush=True)


def execute(runs: list[Run], slots: Slots, total: int) -> bool:
    """Run every pending run, ``len(slots.envs)`` at a time, each in its own process. SIGUSR1 (SLURM's warning
    before preemption) and SIGTERM are passed on to the runs; after SIGTERM no new run starts and the function
    returns True (interrupted), leaving every unfinished run to resume from its checkpoint next time."""
    pending, active = list(runs), []
    stopping = []

    def forward(signum, frame):
        if signum == signal.SIGTERM:
            stopping.append(signum)
        for entry in active:
            entry[2].send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        return _execute(pending, active, slots, total, stopping)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _execute(pending: list[Run], active: list, slots: Slots, total: int, stopping: list) -> bool:
    while (pending and not stopping) or active:
        while pending and slots.free and not stopping:
            run, slot = pending.pop(0), slots.free.pop(0)
            run.directory.mkdir(parents=True, exist_ok=True)
            write_run_files(run.spec, run.directory)
            (run.directory / "result.json").unlink(missing_ok=True)
            prefix = f"[{run.index}/{total} {run.label}]"
            print(f"{prefix} started ({'slot ' + str(slot)})", flush=True)
            env = {**os.environ, **slots.env(slot, run.spec["trainer"]), "PYTHONUNBUFFERED": "1"}
            process = subprocess.Popen(
                [sys.executable, "-m", "ae_lightning.suite.run", str(run.directory)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
            reader = threading.Thread(target=stream, args=(process, prefix, run.directory / "log.txt"), daemon=True)
            reader.start()
            active.append((run, slot, process, reader, prefix, time.perf_counter()))
        time.sleep(0.2)
        for entry in list(active):
            run, slot, process, reader, prefix, started = entry
            if process.poll() is None:
                continue
            reader.join()
            active.remove(entry)
            slots.free.append(slot)
            if stopping:
                print(f"{prefix} stopped by SIGTERM; it resumes from its checkpoint next time", flush=True)
                continue
            run.result = result_of(run) or {}
            if process.returncode == 0 and run.result.get("status") == "done":
                print(
                    f"{prefix} done in {time.perf_counter() - started:.0f} s: {short_scores(run.result['metrics'])}",
                    flush=True,
                )
                continue
            error = run.result.get("error") or describe_exit(process.returncode, run.directory / "log.txt")
            run.result = {"status": "failed", "error": error}
            write_json_atomic(run.directory / "result.json", run.result)
            print(f"{prefix} FAILED: {error} (log: {run.directory / 'log.txt'})", flush=True)
    return bool(stopping)


def describe_exit(returncode: int, log_path: Path) -> str:
    if returncode < 0:
        return f"killed by signal {-returncode}" + (" (out of memory?)" if returncode == -9 else "")
    tail = log_path.read_text().strip().splitlines()[-1:] if log_path.is_file() else []
    return f"exit code {returncode}" + (f": {tail[0]}" if tail else "")
