"""A tangle node served in-process on a free port for the whole module (low MWM for speed)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from mam_client.node.server import RunningNode, serve_in_thread
from mam_client.node.settings import NodeSettings

TEST_MWM = 3


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    settings = NodeSettings(db=tmp_path_factory.mktemp("tangle") / "tangle.sqlite3", port=0, mwm=TEST_MWM,
                            pow_threads=2)
    with serve_in_thread(settings) as running:
        yield running


@pytest.fixture
def fresh_node(tmp_path) -> Iterator[RunningNode]:
    """An empty node of its own, for tests that count tips or restart."""
    settings = NodeSettings(db=tmp_path / "tangle.sqlite3", port=0, mwm=TEST_MWM, pow_threads=2)
    with serve_in_thread(settings) as running:
        yield running
