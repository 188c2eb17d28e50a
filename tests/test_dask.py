"""The Dask backend on a local cluster of 2 worker processes gives the same store as local workers."""
import logging

import numpy as np
import pytest

from tests.conftest import TINY, make_settings
from utils import steps
from utils.store import Store

pytest.importorskip("distributed")


def test_dask_local_cluster_of_two_workers_matches_local_processes(tmp_path, tiny_raw, caplog):
    s = make_settings(tmp_path, *TINY, f"RAW_DATA={tiny_raw}", "SPEC_WORKERS=2")
    steps.sort_step(s)
    local = Store(steps.spec_step(s)["store"])
    logger = logging.getLogger("bioacoustics")
    logger.propagate = True  # let caplog see the suite's logger
    try:
        with caplog.at_level(logging.INFO, logger="bioacoustics"):
            dask_run = steps.spec_step(s.replace(SPEC_BACKEND="dask", STORE_DIR=str(tmp_path / "dask")))
    finally:
        logger.propagate = False
    assert "Dask (local cluster, 2 worker threads)" in caplog.text
    on_dask = Store(dask_run["store"])
    key = ["recording", "start"]
    a, b = local.index.sort_values(key), on_dask.index.sort_values(key)
    assert len(a) > 50 and a[key + ["s2n"]].values.tolist() == b[key + ["s2n"]].values.tolist()
    assert np.array_equal(local.images(a["shard"], a["row"]), on_dask.images(b["shard"], b["row"]))
