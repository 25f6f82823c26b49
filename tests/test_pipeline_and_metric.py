"""Pair batches (order, padding, resumability) and the pair-accuracy metric."""


import numpy as np

from relrank.data.batches import BatchPlans, InputFault, prefetch, steps_per_epoch, table_batches
from relrank.data.pairs import LabelledPairs, Pairs
from relrank.evaluation.accuracy import pair_accuracy
from relrank.model.network import apply_in_batches


def test_every_pair_once_per_epoch_with_padding():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1) * np.ones((1, 2, 2, 3), np.uint8)
    pairs = LabelledPairs.join([Pairs(np.arange(10) % 10, (np.arange(10) + 3) % 10,
                                      np.linspace(0, 1, 10).astype(np.float32))])
    per_epoch = steps_per_epoch(10, 4)
    assert per_epoch == 3
    batches = list(table_batches(BatchPlans(pairs, len(images), 4, seed=0), images, 0, 2 * per_epoch))
    for epoch in range(2):
        seen = []
        for batch in batches[epoch * 3:(epoch + 1) * 3]:
            assert batch["images"].shape == (8, 2, 2, 3) and batch["target"].shape == (4, 1)
            real = batch["weight"][:, 0] == 1
            first, second = batch["images"][batch["a"], 0, 0, 0], batch["images"][batch["b"], 0, 0, 0]
            seen += list(first[real])
            # the second image of each pair is the first + 3 (mod 10), as annotated
            np.testing.assert_array_equal(second[real], (first[real] + 3) % 10)
            np.testing.assert_allclose(batch["target"][real, 0], first[real] / 9, rtol=1e-6)
        assert sorted(seen) == list(range(10))
    assert batches[2]["weight"][:, 0].tolist() == [1, 1, 0, 0]
    assert not np.array_equal(batches[0]["target"], batches[3]["target"])  # reshuffled each epoch
    # Starting mid-way gives exactly the batches an uninterrupted run sees.
    resumed = list(table_batches(BatchPlans(pairs, len(images), 4, seed=0), images, 4, 6))
    for a, b in zip(resumed, batches[4:]):
        np.testing.assert_array_equal(a["images"], b["images"])


def test_image_groups_carry_every_annotated_pair_among_their_images():
    """Image-group batches: each pair of drawn images with its annotation (in either order), nothing else."""
    rng = np.random.default_rng(0)
    n = 40
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1) * np.ones((1, 2, 2, 3), np.uint8)
    per_attr = []
    for _ in range(2):  # two attributes annotating different, overlapping pair sets
        a, b = rng.integers(0, n, 300), rng.integers(0, n, 300)
        keep = a != b
        per_attr.append(Pairs(a[keep], b[keep], rng.choice([0.0, 0.5, 1.0], keep.sum()).astype(np.float32)))
    pairs = LabelledPairs.join(per_attr)
    truth = {}
    for k, p in enumerate(per_attr):
        for x, y, t in zip(p.a, p.b, p.target):
            truth.setdefault((k, int(x), int(y)), float(t))
            truth.setdefault((k, int(y), int(x)), 1.0 - float(t))
    batches = list(table_batches(BatchPlans(pairs, len(images), 0, seed=1, batch_images=8), images, 0, 3))
    for batch in batches:
        assert batch["images"].shape == (8, 2, 2, 3) and batch["a"].shape == (28,) and batch["target"].shape == (28, 2)
        ids = batch["images"][:, 0, 0, 0].astype(int)
        assert len(set(ids)) == 8
        for slot in range(28):
            x, y = ids[batch["a"][slot]], ids[batch["b"][slot]]
            for k in range(2):  # a pair annotated twice counts with its first annotation
                assert batch["weight"][slot, k] == ((k, x, y) in truth)
                if (k, x, y) in truth:
                    assert batch["target"][slot, k] == truth[(k, x, y)]
    resumed = list(table_batches(BatchPlans(pairs, len(images), 0, seed=1, batch_images=8), images, 2, 3))
    np.testing.assert_array_equal(resumed[0]["images"], batches[2]["images"])
    assert steps_per_epoch(len(pairs), 16, batch_images=8) == -(-len(pairs) // 28)


def test_prefetch_preserves_order_and_errors():
    assert list(prefetch(iter(range(50)), size=3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("bad image")

    got = []
    try:
        for x in prefetch(broken()):
            got.append(x)
    except InputFault as error:  # the training loop keeps its steps in a checkpoint and says what failed
        assert str(error) == "ValueError: bad image" and isinstance(error.__cause__, ValueError)
    else:
        raise AssertionError("the producer's error was swallowed")
    assert got == [1]


def loop_accuracy(scores, a, b, target):
    """The original evaluation, one pair at a time."""
    correct = total = 0
    for i, j, t in zip(a, b, target):
        if t == 0.5:
            continue
        total += 1
        predicted = 1.0 if scores[i] > scores[j] else 0.0 if scores[i] < scores[j] else 0.5
        correct += predicted == t
    return 100.0 * correct / total


def test_pair_accuracy_matches_loop_and_counts_ties_wrong():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=50), 1)  # rounding creates predicted ties
    a, b = rng.integers(0, 50, 2000), rng.integers(0, 50, 2000)
    target = rng.choice([0.0, 0.5, 1.0], 2000).astype(np.float32)
    pairs = Pairs(a, b, target)
    assert abs(pair_accuracy(scores, pairs) - loop_accuracy(scores, a, b, target)) < 1e-9
    tiny = Pairs(np.array([0, 0, 1]), np.array([1, 2, 2]), np.array([1.0, 0.5, 0.0], np.float32))
    assert pair_accuracy(np.array([2.0, 1.0, 1.0]), tiny) == 50.0  # tie target skipped, predicted tie wrong


def test_apply_in_batches_scores_each_image_once_in_fixed_batches_or_one_small_one():
    calls = []

    def fake_score(batch):
        calls.append(batch.shape)
        return batch.reshape(len(batch), -1)[:, 0].astype(np.float32)

    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1) * np.ones((1, 2, 2, 3), np.uint8)
    np.testing.assert_array_equal(apply_in_batches(fake_score, images, 4), np.arange(10))
    assert calls == [(4, 2, 2, 3)] * 3  # one shape, compiled once
    calls.clear()
    np.testing.assert_array_equal(apply_in_batches(fake_score, images[:3], 8), np.arange(3))
    assert calls == [(4, 2, 2, 3)]  # fewer images than a batch: padded to a power of two only
    features = apply_in_batches(lambda batch: batch.reshape(len(batch), -1)[:, :2], images, 4)  # rows of features
    np.testing.assert_array_equal(features, np.stack([np.arange(10)] * 2, 1))


def test_all_pairs_expansion_and_seeded_subset():
    pairs = Pairs.from_json({"all_pairs_of": [4, 7, 9, 2], "strengths": [1.0, 3.0, 3.0, 0.0]})
    assert list(zip(pairs.a, pairs.b, pairs.target)) == [
        (4, 7, 0.0), (4, 9, 0.0), (4, 2, 1.0), (7, 9, 0.5), (7, 2, 1.0), (9, 2, 1.0)]
    many = Pairs(np.arange(1000), np.arange(1000) + 1, np.ones(1000, np.float32))
    five_percent = many.subset(0.05)
    assert len(five_percent) == 50 and len(set(five_percent.a)) == 50
    np.testing.assert_array_equal(five_percent.a, many.subset(0.05).a)  # seeded: the same pairs every time
    assert many.subset(1.0) is many
