"""The command-line entry point, run as users run it: a worker pool, a real kill, a resume."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mesm.data.build import read_split_lists
from mesm.data.format import RECORD_DIR, read_manifest
from mesm.data.iemocap import DEFAULT_SPLIT_DIR
from mesm.data.synthetic import make_iemocap_tree

SCRIPT = Path(__file__).resolve().parents[2] / "preprocessing" / "build_iemocap.py"


def _main():
    spec = importlib.util.spec_from_file_location("build_iemocap_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def clean_tree(tmp_path_factory):
    return make_iemocap_tree(
        tmp_path_factory.mktemp("raw") / "release",
        sessions=2,
        dialogs_per_session=2,
        utterances_per_dialog=7,
        seed=11,
    )


def test_killed_run_resumes_with_a_worker_pool_and_a_rerun_skips_everything(
    clean_tree, tmp_path, capsys
):
    out = tmp_path / "out"
    args = ["--raw", str(clean_tree.root), "--out", str(out), "--resplit", "1", "--no-progress"]
    # Its own process group, killed whole like a closed terminal.
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if len(list((out / RECORD_DIR).glob("*.json"))) >= 3:
                break
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finished = len(list((out / RECORD_DIR).glob("*.json")))
    expected = [u.id for u in clean_tree.expected_ok()]
    assert 3 <= finished < len(expected), "the run should have been killed part-way"

    main = _main()
    started = time.perf_counter()
    assert main([*args, "--workers", "2"]) == 0
    resume_seconds = time.perf_counter() - started
    output = capsys.readouterr().out
    assert f"this run built {len(expected) - finished}, skipped {finished}" in output
    assert "excluded labels (not written)" in output
    records = read_manifest(out)
    assert [r.id for r in records] == expected and all(r.status == "ok" for r in records)
    assert all(r.n_faces_detected > 0 for r in records)

    started = time.perf_counter()
    assert main([*args, "--workers", "2"]) == 0
    rerun_seconds = time.perf_counter() - started
    assert f"this run built 0, skipped {len(expected)}" in capsys.readouterr().out
    assert rerun_seconds < resume_seconds / 3


def test_exit_codes_strict_limit_and_nothing_built(tmp_path, capsys):
    main = _main()
    tree = make_iemocap_tree(tmp_path / "raw", sessions=1, dialogs_per_session=4,
                             utterances_per_dialog=6, seed=2, inject_bad=True)  # fmt: skip
    base = ["--raw", str(tree.root), "--resplit", "0", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert "failures by reason:" in capsys.readouterr().out
    assert main([*base, "--out", str(tmp_path / "a"), "--strict"]) == 1
    main([*base, "--out", str(tmp_path / "b"), "--limit", "2"])
    assert len(read_manifest(tmp_path / "b")) == 2
    for video in tree.root.glob("Session*/dialog/avi/DivX/*.avi"):
        video.unlink()
    assert main([*base, "--out", str(tmp_path / "c")]) == 1
    assert "utterances ok: 0" in capsys.readouterr().out


def test_paper_split_lists_are_the_default(clean_tree, tmp_path, capsys):
    main = _main()
    assert main(["--raw", str(clean_tree.root), "--out", str(tmp_path / "out"), "--limit", "2",
                 "--no-progress"]) == 0  # fmt: skip
    output = capsys.readouterr().out
    paper = read_split_lists(DEFAULT_SPLIT_DIR)
    generated = {u.id for u in clean_tree.utterances if u.kept}
    # Generated ids follow IEMOCAP's naming, so a few coincide with ids of the paper's lists.
    assert f"split-list ids absent from the raw data: {len(paper.keys() - generated)}" in output
    records = read_manifest(tmp_path / "out")
    assert [r.split for r in records] == [paper.get(r.id, "unassigned") for r in records]
