"""The embedded synthetic dataset: deterministic, image-once layout, ties, training-label noise."""

import sys

import numpy as np

from relrank.data.datasets import load_dataset


def latents(data, pairs, attr):
    k = data.attributes.index(attr)
    strengths = {i: np.asarray(data.source[int(i)]["strengths"])[k] for i in pairs.images()}
    return np.array([strengths[a] for a in pairs.a]), np.array([strengths[b] for b in pairs.b])


def test_layout_and_annotations(data_dir):
    data = load_dataset("synthetic", data_dir=data_dir)
    assert data.attributes == ["brightness", "size", "pointiness"]
    assert len(data.source) == 1500  # each image stored once
    for attr in data.attributes:
        train, test = data.pairs("train", attr), data.pairs("test", attr)
        assert (len(train), len(test)) == (4000, 3000)
        assert set(train.images()).isdisjoint(test.images())  # no test image is seen in training
        assert np.all(train.a != train.b)
        for pairs, noisy in ((train, True), (test, False)):
            sa, sb = latents(data, pairs, attr)
            tie = np.abs(sa - sb) < 0.04
            np.testing.assert_array_equal(pairs.target[tie], 0.5)
            assert 0.03 < tie.mean() < 0.15
            truth = (sa > sb).astype(np.float32)
            wrong = np.mean(pairs.target[~tie] != truth[~tie])
            if noisy:
                assert 0.02 < wrong < 0.08  # about 5% of training labels flipped
            else:
                assert wrong == 0.0
    assert "tensorflow" not in sys.modules


def test_generation_is_deterministic(data_dir, tmp_path):
    first = load_dataset("synthetic", data_dir=data_dir)
    second = load_dataset("synthetic", data_dir=str(tmp_path))
    for attr in first.attributes:
        np.testing.assert_array_equal(first.pairs("train", attr).target, second.pairs("train", attr).target)
        np.testing.assert_array_equal(first.pairs("test", attr).a, second.pairs("test", attr).a)
    index = np.array([0, 777, 1499])
    np.testing.assert_array_equal(first.load_images(index, 64), second.load_images(index, 64))
    images = first.load_images(index, 32)
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8 and images.std() > 10
