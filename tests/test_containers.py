"""The container recipes: the Dockerfile lints clean (hadolint) and installs through the README's script; compose
and Apptainer build from the same image. No Docker engine runs here, so nothing is built."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from conftest import REPO

DOCKER = REPO / "docker"


def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKER / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_installs_with_the_readme_script_as_non_root():
    text = (DOCKER / "Dockerfile").read_text()
    assert "RUN bash scripts/setup.sh" in text and "pip install" not in text  # one recipe, not two that drift
    assert "FROM pytorch/pytorch:" in text and "cuda" in text
    assert "USER 1000:1000" in text and 'VOLUME ["/data", "/results"]' in text
    assert "bash scripts/setup.sh" in (REPO / "README.md").read_text()
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "data", "results"} <= set(ignored)


def test_compose_runs_a_suite_on_the_gpus_and_apptainer_uses_the_same_image():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    service = compose["services"]["suite"]
    assert service["build"]["dockerfile"] == "docker/Dockerfile" and service["image"] == "ae-lightning:latest"
    assert service["command"][0] == "compare"
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert any(v.endswith(":/data") for v in service["volumes"]) and any(
        v.endswith(":/results") for v in service["volumes"]
    )
    definition = (DOCKER / "apptainer.def").read_text()
    assert "Bootstrap: docker-archive" in definition and "docker save ae-lightning:latest" in definition
    assert 'exec ae-lightning "$@"' in definition
