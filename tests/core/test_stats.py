"""Statistics against hand-worked numbers."""

import numpy as np
import pytest

from tandem.core.stats import bootstrap_ci, iqm, mean_band, poi_ci, probability_of_improvement


def test_iqm_of_known_arrays():
    # 8 scores: floor(0.25 * 8) = 2 trimmed per side -> mean(3, 4, 5, 6) = 4.5
    assert iqm([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx(4.5)
    # an outlier in the top quarter does not move it: mean(3, 4, 5, 6) again
    assert iqm([1, 2, 3, 4, 5, 6, 7, 1e9]) == pytest.approx(4.5)
    # 5 scores: floor(1.25) = 1 per side -> mean(20, 30, 40) = 30
    assert iqm([50, 10, 40, 20, 30]) == pytest.approx(30.0)
    # row-wise on a matrix
    np.testing.assert_allclose(iqm(np.array([[1, 2, 3, 4], [0, 0, 10, 10]])), [2.5, 5.0])


def test_bootstrap_interval_contains_the_true_mean_and_shrinks_with_more_seeds():
    rng = np.random.default_rng(7)
    # Symmetric distribution: the true IQM equals the true mean, 10.
    small = rng.normal(10.0, 2.0, size=10)
    big = rng.normal(10.0, 2.0, size=400)
    p, lo, hi = bootstrap_ci(small, seed=0, n_resamples=2000)
    assert lo <= 10.0 <= hi and lo < p < hi
    p2, lo2, hi2 = bootstrap_ci(big, seed=0, n_resamples=2000)
    assert lo2 <= 10.0 <= hi2
    assert (hi2 - lo2) < (hi - lo) / 3
    # Fixed seed: the same interval twice.
    assert bootstrap_ci(small, seed=0, n_resamples=2000) == (p, lo, hi)


def test_bootstrap_coverage_is_near_nominal():
    # 200 synthetic experiments of 20 seeds each: the 95% interval of the mean should contain
    # the true mean in roughly 95% of them (percentile bootstrap undercovers a little).
    rng = np.random.default_rng(0)
    samples = rng.normal(0.0, 1.0, size=(200, 20))
    covered = 0
    for i, s in enumerate(samples):
        _, lo, hi = bootstrap_ci(s, statistic=_mean, seed=i, n_resamples=500)
        covered += lo <= 0.0 <= hi
    assert 0.88 <= covered / 200 <= 0.99


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def test_stratified_bootstrap_resamples_each_task_on_its_own():
    # Task A's seeds all score 1, task B's all score 3: whatever is resampled within a task,
    # the mean over tasks of the per-task IQM is exactly 2. An unstratified bootstrap (pooling
    # the 8 scores) would give intervals wider than a point.
    p, lo, hi = bootstrap_ci([np.ones(4), np.full(4, 3.0)], seed=0, n_resamples=500)
    assert (p, lo, hi) == (2.0, 2.0, 2.0)
    # All seeds equal (CartPole solved by every seed): a point interval, no error.
    assert bootstrap_ci(np.full(5, 500.0)) == (500.0, 500.0, 500.0)
    with pytest.raises(ValueError, match="at least one score"):
        bootstrap_ci([np.ones(3), np.array([])])


def test_a_task_with_one_score_is_held_fixed_while_the_others_are_resampled():
    # A benchmark part-way: 10 seeds on one env, 1 on another (scipy cannot resample one
    # score). Task B's single score 5 stays; task A's IQM moves within its own interval.
    a = np.arange(10.0)  # IQM of 0..9: mean of 2.5..6.5 (trimming 25% each side) = 4.5
    p, lo, hi = bootstrap_ci([a, np.array([5.0])], seed=0, n_resamples=500)
    alone = bootstrap_ci(a, seed=0, n_resamples=500)
    assert p == pytest.approx((4.5 + 5.0) / 2)
    assert (lo, hi) == pytest.approx(((alone[1] + 5.0) / 2, (alone[2] + 5.0) / 2))
    # P(X > Y) with one score on one side of a task: that task's P is resampled on the other
    # side only; the interval stays inside [0, 1] and around the point
    p, lo, hi = poi_ci([a, np.array([5.0])], [a - 3.0, np.array([4.0])], n_resamples=500)
    assert lo <= p <= hi and 0.0 <= lo and hi <= 1.0
    assert p == pytest.approx((probability_of_improvement(a, a - 3.0) + 1.0) / 2)


def test_probability_of_improvement_by_hand():
    # x = [1, 3], y = [2, 2]: pairs (1>2)=0, (1>2)=0, (3>2)=1, (3>2)=1 -> 2/4 = 0.5
    assert probability_of_improvement([1, 3], [2, 2]) == pytest.approx(0.5)
    # x = [1, 2, 3], y = [2]: 1<2 -> 0, 2=2 -> 0.5, 3>2 -> 1 -> 1.5/3 = 0.5
    assert probability_of_improvement([1, 2, 3], [2]) == pytest.approx(0.5)
    # x = [5, 6], y = [1, 2, 5]: 5 beats 1, 2 and ties 5 -> 2.5; 6 beats all -> 3; 5.5/6
    assert probability_of_improvement([5, 6], [1, 2, 5]) == pytest.approx(5.5 / 6)
    # P(X > Y) + P(Y > X) = 1
    x, y = np.random.default_rng(1).normal(size=(2, 9))
    assert probability_of_improvement(x, y) + probability_of_improvement(y, x) == \
        pytest.approx(1.0)


def test_poi_interval_averages_tasks_and_separates_clear_winners():
    rng = np.random.default_rng(3)
    better = [rng.normal(10, 1, 5), rng.normal(-100, 5, 5)]
    worse = [rng.normal(0, 1, 5), rng.normal(-200, 5, 5)]
    p, lo, hi = poi_ci(better, worse, n_resamples=1000)
    assert (p, lo, hi) == (1.0, 1.0, 1.0)
    # Same distribution: the point is near 0.5 and the interval straddles it.
    a, b = rng.normal(0, 1, (2, 10))
    p, lo, hi = poi_ci([a], [b], n_resamples=2000)
    assert lo < 0.5 < hi
    # Averaged over tasks by hand: task 1 P = 1, task 2 P = 0 -> 0.5
    assert poi_ci([np.array([2.0]), np.array([0.0])],
                  [np.array([1.0]), np.array([1.0])])[0] == pytest.approx(0.5)


def test_mean_band_is_a_student_t_interval():
    curves = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mean, lo, hi = mean_band(curves)
    np.testing.assert_allclose(mean, [2.0, 4.0])
    # column 0: sd = 2, n = 3, t_{0.975, 2} = 4.302653 -> half width 4.302653 * 2 / sqrt(3)
    half0 = 4.302652729911275 * 2.0 / np.sqrt(3)
    np.testing.assert_allclose([lo[0], hi[0]], [2.0 - half0, 2.0 + half0])
    one = mean_band(curves[:1])
    np.testing.assert_allclose(one[1], one[0])
