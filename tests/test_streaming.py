"""The streaming input pipeline (grain workers reading the prepared dataset) against the in-memory table."""

import json
import os

import numpy as np
import pytest

from relrank.data.batches import BatchPlans, fill
from relrank.data.datasets import load_dataset
from relrank.data.pairs import LabelledPairs
from relrank.data.streaming import streaming_batches


@pytest.fixture(scope="module")
def split(data_dir):
    data = load_dataset("synthetic", data_dir=data_dir)
    pairs = data.pairs_of("train", ("brightness", "size"))
    return data.split_images(pairs, 32, "train"), data.split_images(pairs, 32, "train", in_memory=False)


@pytest.mark.parametrize("batch_pairs, batch_images, rows", [(8, 0, slice(None)), (0, 6, slice(None)),
                                                              (8, 0, slice(8, 16))])
def test_streaming_gives_the_batches_of_the_in_memory_table(split, batch_pairs, batch_images, rows):
    table, stored = split
    assert isinstance(table.images, np.ndarray) and not isinstance(stored.images, np.ndarray)
    pairs = LabelledPairs.join([table.pairs["brightness"], table.pairs["size"]])
    plans = BatchPlans(pairs, len(table.ids), batch_pairs, seed=3, batch_images=batch_images)
    start, end = plans.per_epoch - 2, plans.per_epoch + 3  # across an epoch's end
    expected = [fill(plans(step), table.images.__getitem__, rows) for step in range(start, end)]
    streamed = list(streaming_batches(plans, stored.images, start, end, rows, workers=2))
    assert len(streamed) == len(expected) == 5
    for got, want in zip(streamed, expected):
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert expected[0]["images"].shape[0] == (len(range(16)[rows]) if batch_pairs else 6)


def test_datasets_larger_than_tfds_memory_buffer_prepare_without_tensorflow(data_dir, tmp_path, monkeypatch):
    """TFDS spills to bucket files past its buffer (1 GB); shrink it so the synthetic set spills."""
    import tensorflow_datasets.core.shuffle as shuffle

    monkeypatch.setattr(shuffle, "MAX_MEM_BUFFER_SIZE", 10_000)
    spilled, kept = load_dataset("synthetic", data_dir=str(tmp_path)), load_dataset("synthetic", data_dir=data_dir)
    assert len(spilled.source) == len(kept.source) == 1500
    for index in range(0, 1500, 37):
        assert spilled.source[index]["image"] == kept.source[index]["image"]


def test_pair_index_is_stored_as_arrays_not_json_lists(data_dir):
    root = os.path.join(data_dir, "synthetic", "1.0.0")
    described = json.load(open(os.path.join(root, "metadata.json")))
    assert described["pair_sets"]["train"]["size"] == {"arrays": "set1"}
    pairs = load_dataset("synthetic", data_dir=data_dir).pairs("train", "size")
    assert isinstance(pairs.a, np.ndarray) and pairs.a.dtype == np.int64 and len(pairs) == 4000


def test_auto_streams_only_when_the_image_tables_exceed_the_memory_budget(data_dir, monkeypatch, capsys):
    from relrank.data import streaming
    from relrank.configs import make_config
    from relrank.train.loop import _keep_in_memory

    data = load_dataset("synthetic", data_dir=data_dir)
    train, test = data.pairs_of("train", ("size",)), dict(test=data.pairs_of("test", ("size",)))
    assert 1100 < len(train["size"].images()) <= 1200
    needed = (len(train["size"].images()) + len(test["test"]["size"].images())) * 32 * 32 * 3
    config = make_config()
    monkeypatch.setattr(streaming, "memory_budget", lambda: needed)
    splits = [data.split_images(train, 32, "train", in_memory=False),
              data.split_images(test["test"], 32, "test", in_memory=False)]
    assert _keep_in_memory(config, splits)
    monkeypatch.setattr(streaming, "memory_budget", lambda: needed - 1)
    assert not _keep_in_memory(config, splits)
    assert "streaming the images: their tables would take" in capsys.readouterr().err
    assert _keep_in_memory(make_config(input_pipeline="memory"), splits)
    assert not _keep_in_memory(make_config(input_pipeline="streaming"), splits)
