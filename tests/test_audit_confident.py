"""Confident learning on synthetic data whose true labels are known (audit/confident.py), checked
by hand-computed cases and against cleanlab, the reference implementation."""

import numpy as np
import pytest

from audit import confident
from audit.features import cross_validated_probabilities, feature_extractor


def noisy_dataset(n=1400, k=4, noise=0.2, seed=0, sharpness=0.85):
    """Probabilities from a decent model of the true classes; a share of labels flipped."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k), n) * (1 - sharpness)
    probs[np.arange(n), truth] += sharpness
    flipped = rng.random(n) < noise
    given = truth.copy()
    given[flipped] = (truth[flipped] + rng.integers(1, k, flipped.sum())) % k
    return truth, given, probs, flipped


def test_thresholds_are_the_mean_probability_of_each_class_over_its_labels():
    labels = np.array([0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1, 0], [0.5, 0.5, 0], [0.2, 0.8, 0], [0.4, 0.6, 0], [0.0, 1.0, 0]])
    thresholds = confident.per_class_thresholds(labels, probs)
    assert thresholds[:2] == pytest.approx([0.7, 0.8])
    # Nobody labeled class 2: no probability can make an example confidently class 2.
    assert thresholds[2] == confident.ABSENT_CLASS_THRESHOLD


def test_the_confident_joint_counts_each_example_under_its_most_probable_confident_class():
    labels = np.array([0, 0, 1, 1])
    thresholds = np.array([0.5, 0.5, 0.5])
    probs = np.array(
        [
            [0.6, 0.4, 0.0],  # confident only for 0: (0, 0)
            [0.1, 0.3, 0.6],  # only 2 reaches its threshold: (0, 2)
            [0.5, 0.5, 0.0],  # 0 and 1 both reach theirs, argmax picks the first: (1, 0)
            [0.3, 0.35, 0.35],  # reaches no threshold: not counted
        ]
    )
    joint = confident.confident_joint(labels, probs, thresholds)
    # The diagonal is at least 1 so that a class never looks entirely mislabeled by accident.
    assert joint.tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 1]]


def test_calibration_scales_rows_to_the_label_counts_and_keeps_whole_examples():
    joint = np.array([[8, 2], [1, 3]])
    calibrated = confident.calibrate(joint, np.array([20, 9]))
    assert calibrated.sum(axis=1).tolist() == [20, 9]
    assert calibrated.tolist() == [[16, 4], [2, 7]]


def test_pruning_flags_the_largest_margins_and_never_a_label_the_model_agrees_with():
    labels = np.array([0, 0, 0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.45, 0.55], [0.1, 0.9], [0.2, 0.8]])
    calibrated = np.array([[2, 2], [0, 2]])
    issues = confident.prune_by_noise_rate(labels, probs, calibrated)
    # Two of class 0 go: the ones with the largest p1 - p0 (0.6 and 0.2), not 0.1.
    assert issues.tolist() == [False, True, True, False, False, False]
    # Asking for more than the examples whose model label differs still flags only those.
    issues = confident.prune_by_noise_rate(labels, probs, np.array([[0, 4], [0, 2]]))
    assert issues.tolist() == [False, True, True, True, False, False]


def test_the_audit_finds_flipped_labels_and_suggests_their_true_class():
    truth, given, probs, flipped = noisy_dataset()
    result = confident.audit(given, probs)
    found = result.issues & flipped
    assert found.sum() / result.issues.sum() > 0.9  # precision
    assert found.sum() / flipped.sum() > 0.85  # recall
    assert (result.suggested[found] == truth[found]).mean() > 0.95
    assert (result.suggested[~result.issues] == -1).all()
    # Noise rates per class near the 20 % that was injected.
    assert result.noise_rates == pytest.approx(np.full(4, 0.2), abs=0.06)
    assert result.joint.sum() == pytest.approx(1.0)


def test_the_self_confidence_score_ranks_flipped_labels_first():
    from sklearn.metrics import roc_auc_score

    _, given, probs, flipped = noisy_dataset(seed=3)
    result = confident.audit(given, probs)
    assert result.label_quality == pytest.approx(probs[np.arange(len(given)), given])
    assert roc_auc_score(flipped, -result.label_quality) > 0.95
    worst = np.argsort(result.label_quality)[:100]
    assert flipped[worst].mean() > 0.95


def test_on_clean_labels_and_a_good_model_almost_nothing_is_flagged():
    _, given, probs, _ = noisy_dataset(noise=0.0, sharpness=0.9)
    result = confident.audit(given, probs)
    assert result.issues.mean() < 0.02
    assert not result.confident.any()


def test_confident_suggestions_need_strong_evidence_against_the_given_label():
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1])
    probs = np.array(
        [
            [0.001, 0.999],  # overwhelming evidence: 999 times as likely as the given label
            [0.1, 0.9],  # the model disagrees, but only 9 to 1
            [0.9, 0.1],
            [0.95, 0.05],
            [0.9, 0.1],
            [0.99, 0.01],
            [0.1, 0.9],
            [0.2, 0.8],
            [0.05, 0.95],
        ]
    )
    result = confident.audit(labels, probs)
    assert result.issues[:2].tolist() == [True, True]
    assert result.confident[:2].tolist() == [True, False]
    assert result.suggested[:2].tolist() == [1, 1]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        confident.audit([0, 1], np.ones((3, 2)) / 2)
    with pytest.raises(ValueError):
        confident.audit([0, 5], np.ones((2, 2)) / 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_it_agrees_with_cleanlab(seed):
    cleanlab = pytest.importorskip("cleanlab")
    from cleanlab.count import compute_confident_joint
    from cleanlab.filter import find_label_issues

    assert cleanlab.__version__
    rng = np.random.default_rng(seed)
    # A harder case than above: uneven classes, a weaker model, noise that prefers one direction.
    _, given, probs, _ = noisy_dataset(n=2000, k=5, noise=0.25, seed=seed, sharpness=0.5)
    given[rng.random(len(given)) < 0.05] = 0
    result = confident.audit(given, probs)
    assert (result.calibrated_joint == compute_confident_joint(given, probs, calibrate=True)).all()
    assert (result.confident_joint == compute_confident_joint(given, probs, calibrate=False)).all()
    theirs = find_label_issues(given, probs, filter_by="prune_by_noise_rate", n_jobs=1)
    assert (result.issues == theirs).all()


def test_cross_validated_probabilities_separate_clusters_without_seeing_each_label():
    rng = np.random.default_rng(0)
    k, per_class = 7, 60
    centres = rng.normal(0, 6, (k, 16))
    truth = np.repeat(np.arange(k), per_class)
    features = centres[truth] + rng.normal(0, 1, (len(truth), 16))
    given = truth.copy()
    flipped = rng.choice(len(truth), 40, replace=False)
    given[flipped] = (truth[flipped] + 1) % k
    probs = cross_validated_probabilities(features, given, k)
    assert probs.shape == (len(truth), k)
    assert probs.sum(axis=1) == pytest.approx(np.ones(len(truth)))
    # Held out, a flipped example is judged by folds that learned its cluster from the others.
    assert (probs.argmax(axis=1) == truth).mean() > 0.97
    result = confident.audit(given, probs)
    assert result.issues[flipped].mean() > 0.9
    assert (result.suggested[flipped] == truth[flipped]).mean() > 0.9


def test_cross_validation_copes_with_a_class_of_one_image():
    rng = np.random.default_rng(1)
    features = rng.normal(0, 1, (30, 4))
    labels = np.array([0] * 15 + [1] * 14 + [2])
    probs = cross_validated_probabilities(features, labels, 7)
    assert probs.shape == (30, 7)
    assert probs.sum(axis=1) == pytest.approx(np.ones(30))


def test_penultimate_features_of_a_plain_and_a_flip_averaged_model(tmp_path):
    import keras

    from tests.factories import make_tiny_model
    from training.architectures import with_flip_averaging

    model = keras.models.load_model(make_tiny_model(tmp_path / "tiny.keras"), compile=False)
    batch = np.random.default_rng(0).uniform(-1, 1, (5, 48, 48, 1)).astype("float32")
    extract, name = feature_extractor(model)
    features = extract(batch)
    assert features.shape == (5, 8)  # the pooled 8 channels before the 7-way softmax
    assert "global_average_pooling" in name
    penultimate = keras.Model(model.inputs, model.layers[-2].output)
    expected = penultimate.predict(batch, verbose=0)
    assert features == pytest.approx(expected, abs=1e-5)

    wrapped = with_flip_averaging(model)
    path = tmp_path / "flip.keras"
    wrapped.save(path)
    loaded = keras.models.load_model(path, compile=False)
    extract, name = feature_extractor(loaded)
    mirrored = penultimate.predict(np.ascontiguousarray(batch[:, :, ::-1]), verbose=0)
    assert "mirror" in name
    assert extract(batch) == pytest.approx((expected + mirrored) / 2, abs=1e-5)
    assert not np.allclose(mirrored, expected)  # the mirror really is another input
