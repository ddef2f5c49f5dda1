"""Where things run: which GPUs and CPUs a run may use, where the battery evaluates, memory peaks, and per-rank
random streams. Small functions of plain inputs, so the GPU and cluster logic is tested on a CPU machine by calling
them with the environments a GPU node or a SLURM job would give.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Mapping

import torch

from ae_lightning.errors import ConfigError


def visible_gpus(environ: Mapping[str, str], device_count: int) -> list[str]:
    """The GPUs this process may use, each as the entry to put in a child's ``CUDA_VISIBLE_DEVICES``.

    Taken from the inherited ``CUDA_VISIBLE_DEVICES`` when it is set — a job that owns GPUs 4 and 5 (``4,5``), GPU
    UUIDs (``GPU-8f…``) or MIG instances (``MIG-…``) — so a run never lands on a GPU the job does not own; CUDA
    stops at the first entry it cannot use, which ``device_count`` (what torch saw) reflects. Otherwise the indices
    ``0 … device_count − 1``.
    """
    inherited = environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is None:
        return [str(index) for index in range(device_count)]
    entries = [entry.strip() for entry in inherited.split(",") if entry.strip()]
    return entries[:device_count]


def usable_cpus(environ: Mapping[str, str]) -> int:
    """CPUs this process may run on: its affinity mask (cgroups, ``taskset``, SLURM's task binding), capped by
    ``SLURM_CPUS_PER_TASK`` (a job without CPU binding still owns only that many), never ``os.cpu_count()``."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    per_task = environ.get("SLURM_CPUS_PER_TASK", "")
    if per_task.isdigit() and int(per_task) > 0:
        cpus = min(cpus, int(per_task))
    return max(1, cpus)


def parse_device(value: str, where: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:1``, ``mps``… as a torch device; one clear error otherwise."""
    try:
        return torch.device(value)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"{where}={value!r} is not a device ({err}); allowed: cpu, cuda, cuda:<index>, mps") from None


def evaluation_device(trained_on: torch.device, override: str | None = None) -> torch.device:
    """Where the evaluation battery runs: the device the run trained on (Lightning's teardown has moved the module
    back to the CPU by then), unless ``evaluation.device`` says otherwise."""
    if override is None:
        return trained_on
    device = parse_device(override, "evaluation.device")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"evaluation.device={override!r}, but no CUDA device is available here")
    return device


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process on ``device`` in MiB: allocated CUDA memory on a GPU, else the peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's peak resident set in MiB.

    On Linux it is ``VmHWM`` of /proc/self/status: ``ru_maxrss`` keeps the peak of the parent a process was forked
    from across exec (a run started by the suite runner would report the runner's peak if larger).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a timer read afterwards measures it (CUDA kernels run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class HostCopy:
    """A scalar copied to the host without stalling the device; :meth:`value` waits for that copy, and only that
    copy, before reading it.

    A non-blocking device-to-host copy returns at once and fills its host tensor later; reading the tensor before
    the copy has run reads garbage. An event recorded right after the copy says when it is done. ``event`` is for
    tests (anything with ``record()`` and ``synchronize()``); on a CUDA tensor a CUDA event is made.
    """

    def __init__(self, tensor: torch.Tensor, event=None) -> None:
        self.host = tensor.detach().to("cpu", non_blocking=True)
        self.ready = event if event is not None else (torch.cuda.Event() if tensor.is_cuda else None)
        if self.ready is not None:
            self.ready.record()

    def value(self) -> float:
        if self.ready is not None:
            self.ready.synchronize()
        return self.host.item()
