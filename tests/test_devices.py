"""Device logic driven directly with the environments a GPU node or a SLURM job gives (no GPU needed), and what a
fit measures about itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch

from ae_lightning import Autoencoder, ImageDataModule
from ae_lightning.callbacks import FitMeter, ResumeCheckpoint
from ae_lightning.devices import HostCopy, evaluation_device, usable_cpus, visible_gpus
from ae_lightning.errors import ConfigError
from ae_lightning.suite.launch import Slots, processes_per_run

from conftest import REPO, quiet_trainer, write_small_suite
from test_cli import cli, cli_in_process


@pytest.mark.parametrize(
    "inherited, count, expected",
    [
        (None, 3, ["0", "1", "2"]),  # nothing inherited: every GPU torch sees
        ("4,5", 2, ["4", "5"]),  # a job that owns GPUs 4 and 5 (SLURM without device cgroups)
        ("GPU-8f6a2c1e-0d3b,GPU-11aa22bb-3c4d", 2, ["GPU-8f6a2c1e-0d3b", "GPU-11aa22bb-3c4d"]),
        ("MIG-0a1b2c3d-4e5f", 1, ["MIG-0a1b2c3d-4e5f"]),
        ("2, 3,", 2, ["2", "3"]),
        ("1,7", 1, ["1"]),  # CUDA stops at the first entry it cannot use; torch saw one device
        ("", 0, []),  # a job with no GPU
    ],
)
def test_gpus_come_from_the_inherited_list(inherited, count, expected):
    environ = {} if inherited is None else {"CUDA_VISIBLE_DEVICES": inherited}
    assert visible_gpus(environ, count) == expected


def test_slots_take_the_jobs_gpus_and_share_them():
    slots = Slots(["4", "5"], ddp=False, parallel=1, runs_per_gpu=2, cpus=8)
    # spread over the GPUs first, then a second run on each; never GPU 0 or 1, which the job does not own
    assert [env["CUDA_VISIBLE_DEVICES"] for env in slots.envs] == ["4", "5", "4", "5"]
    assert slots.env(0, {})["OMP_NUM_THREADS"] == "2"  # 8 CPUs over 4 runs
    ddp = Slots(["GPU-a", "GPU-b"], ddp=True, parallel=1, cpus=8)
    assert ddp.envs == [{"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b"}]
    assert ddp.env(0, {"strategy": "ddp", "devices": -1})["OMP_NUM_THREADS"] == "4"  # 8 CPUs over its 2 ranks
    cpu = Slots([], ddp=False, parallel=2, cpus=2)
    assert len(cpu.envs) == 2 and cpu.env(1, {})["OMP_NUM_THREADS"] == "1"
    # a DDP run on 2 CPU processes: the slot's threads split between them
    assert Slots([], ddp=False, parallel=1, cpus=4).env(0, {"strategy": "ddp", "devices": 2})["OMP_NUM_THREADS"] == "2"
    assert processes_per_run({"strategy": "ddp", "devices": 3, "accelerator": "cpu"}, 0) == 3
    assert processes_per_run({"devices": 2}, 0) == 1  # no DDP: one process


def test_cpus_from_affinity_and_slurm():
    assert usable_cpus({}) == len(os.sched_getaffinity(0))
    assert usable_cpus({"SLURM_CPUS_PER_TASK": "1"}) == 1
    assert usable_cpus({"SLURM_CPUS_PER_TASK": "999"}) == len(os.sched_getaffinity(0))
    # a process pinned to one CPU (taskset, cgroups) counts one, whatever os.cpu_count() says
    pinned = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
            "from ae_lightning.devices import usable_cpus; print(usable_cpus({}), os.cpu_count())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert pinned.stdout.split()[0] == "1"


def test_battery_device_is_the_training_device_unless_overridden():
    assert evaluation_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert evaluation_device(torch.device("cuda", 1), "cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="evaluation.device='gpu0' is not a device"):
        evaluation_device(torch.device("cpu"), "gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device is available"):
            evaluation_device(torch.device("cpu"), "cuda")


class RecordingEvent:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def record(self) -> None:
        self.calls.append("record")

    def synchronize(self) -> None:
        self.calls.append("synchronize")


def test_host_copy_waits_for_its_event_before_reading():
    event = RecordingEvent()
    copy = HostCopy(torch.tensor(float("nan")), event=event)
    assert event.calls == ["record"]  # recorded right after the copy was queued
    assert copy.value() != copy.value()  # NaN read back
    assert event.calls[:2] == ["record", "synchronize"]  # waited before the first read
    assert HostCopy(torch.tensor(2.5)).value() == 2.5  # on the CPU no event is needed


def test_fit_meter_counts_only_the_resumed_segment(data_root, tmp_path):
    def datamodule() -> ImageDataModule:
        return ImageDataModule(name="mnist", root=str(data_root), download=False, val_size=100, batch_size=50)

    pl.seed_everything(0)
    first, resume = FitMeter(), ResumeCheckpoint(dirpath=str(tmp_path))
    quiet_trainer(max_epochs=2, callbacks=[resume, first], enable_checkpointing=True).fit(
        Autoencoder(latent_dim=4), datamodule=datamodule()
    )
    assert first.samples == 2 * 500 and first.seconds > 0 and first.peak_mem_mb > 0
    assert first.device == torch.device("cpu")
    second = FitMeter()
    resumed = quiet_trainer(
        max_epochs=3, callbacks=[ResumeCheckpoint(dirpath=str(tmp_path)), second], enable_checkpointing=True
    )
    resumed.fit(Autoencoder(latent_dim=4), datamodule=datamodule(), ckpt_path=resume.path, weights_only=True)
    assert second.samples == 500  # the one epoch this segment trained, not all three
    assert second.samples_per_s == pytest.approx(500 / second.seconds)


def test_ddp_flag_without_gpus_is_one_clear_error(tmp_path, data_root):
    suite = write_small_suite(tmp_path / "s.yaml", data_root, "s", [{"model": "Autoencoder"}], 1, "disabled")
    env = {"CUDA_VISIBLE_DEVICES": ""}
    result = cli("compare", str(suite), "--out", str(tmp_path / "out"), "--ddp", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "--ddp runs each run on all GPUs, but this process sees none" in result.stderr
    assert "trainer: {accelerator: cpu, strategy: ddp, devices: 2}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    bad = cli_in_process("compare", str(suite), "--runs-per-gpu", "0", cwd=tmp_path)
    assert bad.returncode == 2 and "--runs-per-gpu 0: must be >= 1" in bad.stderr
    assert not (tmp_path / "out").exists()  # nothing written before the error


def test_a_run_records_where_it_trained_and_the_smoke_verdicts_read_it(tmp_path, data_root):
    suite = write_small_suite(tmp_path / "s.yaml", data_root, "s", [{"model": "Autoencoder"}], 1, "disabled", seeds=[0])
    out = tmp_path / "smoke" / "one_gpu"  # laid out as scripts/gpu_smoke.sh lays out its first part
    result = cli_in_process("compare", str(suite), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    record = json.loads((out / "runs" / "Autoencoder" / "seed0" / "result.json").read_text())
    assert record["trained_on"] == record["evaluated_on"] == "cpu" and record["world_size"] == 1
    assert record["metrics"]["fit/samples_per_s"] > 0
    # the smoke test's verdicts: one line per check; a CPU run passes as CPU and fails as a GPU run
    on_cpu = subprocess.run(
        [sys.executable, "-m", "ae_lightning.smoke", str(tmp_path / "smoke"), "--expect-device", "cpu"],
        capture_output=True,
        text=True,
    )
    assert on_cpu.returncode == 0, on_cpu.stdout
    assert on_cpu.stdout.splitlines()[:3] == [
        "PASS  one_gpu: every run done (1 of 1); not done: []",
        "PASS  one_gpu: battery ran on cpu; elsewhere: []",
        f"PASS  one_gpu: fit/peak_mem_mb is cpu memory ({record['metrics']['fit/peak_mem_mb']:.0f} MiB); not: []",
    ]
    as_gpu = subprocess.run(
        [sys.executable, "-m", "ae_lightning.smoke", str(tmp_path / "smoke")], capture_output=True, text=True
    )
    assert as_gpu.returncode == 1
    assert "FAIL  one_gpu: battery ran on cuda; elsewhere: ['Autoencoder/seed0']" in as_gpu.stdout
    assert "FAIL  one_gpu: fit/peak_mem_mb is cuda memory" in as_gpu.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU smoke test needs a CUDA device; none here")
def test_gpu_smoke_script(tmp_path):
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_smoke.sh"), str(tmp_path / "smoke")],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert "gpu smoke: all checks passed" in result.stdout


def test_gpu_smoke_script_without_a_gpu_says_so(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_smoke.sh"), str(tmp_path / "smoke")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2
    assert "gpu_smoke: no CUDA device here" in result.stderr and "run it on a GPU node" in result.stderr
    assert not (tmp_path / "smoke").exists()
