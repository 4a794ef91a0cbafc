"""One miniature raw IEMOCAP tree with every bad input, built once per test session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from mesm.data.build import BuildSummary
from mesm.data.iemocap import build_iemocap
from mesm.data.synthetic import SyntheticTree, make_iemocap_tree


@dataclass
class BuiltTree:
    tree: SyntheticTree
    out: Path
    summary: BuildSummary


@pytest.fixture(scope="session")
def iemocap_tree(tmp_path_factory) -> SyntheticTree:
    return make_iemocap_tree(
        tmp_path_factory.mktemp("raw") / "IEMOCAP_full_release",
        sessions=2,
        dialogs_per_session=4,
        utterances_per_dialog=6,
        seed=3,
        inject_bad=True,
    )


@pytest.fixture(scope="session")
def built_iemocap(iemocap_tree, tmp_path_factory) -> BuiltTree:
    out = tmp_path_factory.mktemp("processed") / "iemocap"
    summary = build_iemocap(iemocap_tree.root, out, resplit_seed=0, progress=False)
    return BuiltTree(iemocap_tree, out, summary)
