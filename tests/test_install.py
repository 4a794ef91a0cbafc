"""CI and the Docker image install the same pinned environment through one script."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_and_docker_share_the_install_script() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"^docker/install\.sh\s*$", ci, re.MULTILINE)
    installs = re.findall(r"docker/install\.sh --cuda --no-dev", dockerfile)
    assert installs, "the image must install through docker/install.sh with the cuda extra"
    # Neither may install packages any other way, or the two environments drift apart.
    for text in (ci, dockerfile):
        assert "pip install" not in text
        assert "uv pip" not in text and "uv add" not in text


def test_install_script_rejects_unknown_options(tmp_path: Path) -> None:
    import subprocess

    result = subprocess.run(
        ["bash", str(ROOT / "docker" / "install.sh"), "--gpu"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "unknown option '--gpu'" in result.stderr


def test_readme_quick_start_is_the_two_commands_ci_and_users_run() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in quick_start.strip().splitlines()]
    assert commands == ["uv run python experiments/run.py --top-p 0.5", "uv run pytest"]
    assert re.search(r"^uv run pytest\s*$", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)
    assert (ROOT / "experiments" / "run.py").is_file()


def test_every_image_command_names_a_script_that_exists() -> None:
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    scripts = re.findall(r"exec python (\S+\.py)", entrypoint)
    assert len(scripts) == 6  # build-iemocap, build-mosei, run, flops, visualize, gpu-check
    missing = [script for script in scripts if not (ROOT / script).is_file()]
    assert not missing
    assert "exec mesm predict" in entrypoint
    assert re.search(r"^\s*mesm = mesm\.cli:main\s*$", (ROOT / "setup.cfg").read_text(), re.M)
    assert (ROOT / "mesm" / "cli.py").is_file()
