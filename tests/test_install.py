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
