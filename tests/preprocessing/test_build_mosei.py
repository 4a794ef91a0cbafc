"""The command-line entry point as users run it: shards into one folder, merge, options."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from mesm.data.build import SHARD_DIR, read_split_lists, shard_of
from mesm.data.format import MANIFEST_FILE, read_manifest
from mesm.data.mosei import DEFAULT_SPLIT_DIR, PROBLEM_UNMATCHED_INTERVAL
from mesm.data.synthetic_mosei import make_mosei_tree

SCRIPT = Path(__file__).resolve().parents[2] / "preprocessing" / "build_mosei.py"


def _main():
    spec = importlib.util.spec_from_file_location("build_mosei_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def clean_tree(tmp_path_factory):
    return make_mosei_tree(
        tmp_path_factory.mktemp("raw") / "CMU_MOSEI",
        videos=4,
        segments_per_video=2,
        seed=4,
        duration=(0.6, 1.2),
    )


def test_shards_build_disjoint_parts_into_one_folder_and_merge_gives_one_manifest(
    clean_tree, tmp_path, capsys
):
    main = _main()
    # With seed 4, three shards get 0, 2 and 2 videos: an empty shard is no failure.
    assert sorted(shard_of(v, 3) for v in clean_tree.video_ids) == [1, 1, 2, 2]
    out = tmp_path / "out"
    base = ["--raw", str(clean_tree.root), "--out", str(out), "--resplit", "0", "--no-progress"]
    for index in (2, 0):
        assert main([*base, "--num-shards", "3", "--shard-index", str(index)]) == 0
        assert f"shard {index} of 3: utterances ok" in capsys.readouterr().out
    assert not (out / MANIFEST_FILE).exists()  # a shard never writes a partial manifest
    assert main(["--out", str(out), "--merge"]) == 1
    assert "shard(s) [1] of 3 have not finished" in capsys.readouterr().err

    assert main([*base, "--num-shards", "3", "--shard-index", "1"]) == 0
    capsys.readouterr()
    assert main(["--out", str(out), "--merge"]) == 0
    merged = capsys.readouterr().out
    expected = [s.id for s in clean_tree.expected_ok()]
    assert f"utterances ok: {len(expected)}, failed: 0" in merged
    records = read_manifest(out)
    assert [r.id for r in records] == expected and all(r.status == "ok" for r in records)

    markers = [json.loads(p.read_text()) for p in sorted((out / SHARD_DIR).glob("*.json"))]
    ids = [set(marker["ids"]) for marker in markers]
    assert sum(len(part) for part in ids) == len(set().union(*ids)) == len(expected)
    source = {r.id: r.source for r in records}
    for marker in markers:
        assert {shard_of(source[i], 3) for i in marker["ids"]} <= {marker["shard_index"]}

    # The merged folder equals an unsharded build of the same tree, record for record.
    single = tmp_path / "single"
    assert main(["--raw", str(clean_tree.root), "--out", str(single), "--resplit", "0",
                 "--no-progress"]) == 0  # fmt: skip
    assert (single / MANIFEST_FILE).read_text() == (out / MANIFEST_FILE).read_text()

    # A re-run shard resumes (builds nothing); its marker is rewritten and merge still works.
    capsys.readouterr()
    assert main([*base, "--num-shards", "3", "--shard-index", "1"]) == 0
    assert "this run built 0, skipped" in capsys.readouterr().out
    assert main(["--out", str(out), "--merge"]) == 0


def test_options_exit_codes_and_label_sources(tmp_path, capsys):
    main = _main()
    tree = make_mosei_tree(tmp_path / "raw", videos=4, segments_per_video=1, seed=2,
                           duration=(0.6, 1.0), inject_bad=True)  # fmt: skip
    base = ["--raw", str(tree.root), "--resplit", "0", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert "failures by reason:" in capsys.readouterr().out
    assert main([*base, "--out", str(tmp_path / "a"), "--strict"]) == 1
    capsys.readouterr()

    assert main([*base, "--out", str(tmp_path / "csd"), "--label-source", "csd"]) == 0
    assert f"{PROBLEM_UNMATCHED_INTERVAL}: 1" in capsys.readouterr().out
    failed = {r.id: r.reason for r in read_manifest(tmp_path / "csd") if r.status == "failed"}
    assert failed == tree.expected_failures("csd")
    ok_csv = [(r.id, r.labels) for r in read_manifest(tmp_path / "a") if r.status == "ok"]
    ok_csd = [(r.id, r.labels) for r in read_manifest(tmp_path / "csd") if r.status == "ok"]
    assert ok_csv == ok_csd

    main([*base, "--out", str(tmp_path / "b"), "--limit", "2"])
    assert len(read_manifest(tmp_path / "b")) == 2
    assert main(["--out", str(tmp_path / "b"), "--merge"]) == 1
    assert "no shard marker" in capsys.readouterr().err
    for bad in (["--num-shards", "2", "--shard-index", "2"], ["--num-shards", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*base, "--out", str(tmp_path / "c"), *bad])
        assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "c")])
    assert "--raw is required" in capsys.readouterr().err


def test_paper_split_lists_are_the_default(clean_tree, tmp_path, capsys):
    main = _main()
    assert main(["--raw", str(clean_tree.root), "--out", str(tmp_path / "out"), "--limit", "2",
                 "--no-progress"]) == 0  # fmt: skip
    output = capsys.readouterr().out
    paper = read_split_lists(DEFAULT_SPLIT_DIR)
    assert sorted(paper.values()).count("train") == 14524 and len(paper) == 20477
    generated = {s.id for s in clean_tree.segments}
    assert f"split-list ids absent from the raw data: {len(paper.keys() - generated)}" in output
    records = read_manifest(tmp_path / "out")
    assert [r.split for r in records] == [paper.get(r.id, "unassigned") for r in records]
    assert "utterances in no split list (written as 'unassigned'): 2" in output
