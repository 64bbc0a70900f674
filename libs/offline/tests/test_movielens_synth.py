"""The synthetic MovieLens 1M: ML-1M's exact counts and, within stated tolerances, its
statistics at full size; ratings drawn from the planted truth; reproducible from a seed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from cineamate.cli.main import main
from cineamate.offline.movielens import (
    ML_1M,
    MovieLens,
    counts_of,
    generate,
    open_dataset,
    read_columnar,
    statistics_of,
    user_cohorts,
    write_columnar,
    write_synthetic,
)

# ML-1M's published shares of 1..5 stars.
_ML_1M_STARS = {1: 0.056, 2: 0.108, 3: 0.261, 4: 0.349, 5: 0.226}


@pytest.fixture(scope="session")
def full_size(tmp_path_factory: pytest.TempPathFactory) -> tuple[MovieLens, Path, float]:
    """The full-size synthetic set, written once per session, with the seconds it took."""
    directory = tmp_path_factory.mktemp("ml-1m-synthetic")
    started = time.monotonic()
    data = write_synthetic(directory)
    return data, directory, time.monotonic() - started


@pytest.mark.slow
def test_full_size_has_ml_1m_counts_exactly(full_size: tuple[MovieLens, Path, float]) -> None:
    data, _, _ = full_size
    assert counts_of(data) == ML_1M
    assert data.users.user_ids.tolist() == list(range(1, 6_041))
    assert data.movies.movie_ids.max() <= 3_952


@pytest.mark.slow
def test_full_size_statistics_match_ml_1m(full_size: tuple[MovieLens, Path, float]) -> None:
    stats = statistics_of(full_size[0])
    # Activity and popularity: ML-1M has median 96 and max 2,314 ratings per user, at most
    # 3,428 ratings per movie, 114 movies with one rating.
    assert stats.min_user_ratings == 20
    assert 86 <= stats.median_user_ratings <= 106
    assert 2_000 <= stats.max_user_ratings <= 2_600
    assert 3_000 <= stats.max_movie_ratings <= 3_800
    assert 70 <= stats.movies_with_one_rating <= 170
    for stars, share in _ML_1M_STARS.items():
        assert stats.rating_shares[stars] == pytest.approx(share, abs=0.005), stars
    # Time: 90.5% of ML-1M's ratings are from 2000, 6.8% from 2001, 2.4% 2002, 0.3% 2003.
    assert stats.first_rating.isoformat() == "2000-04-25T23:05:32+00:00"
    assert stats.last_rating.isoformat() == "2003-02-28T17:49:50+00:00"
    assert stats.year_shares[2000] == pytest.approx(0.905, abs=0.015)
    assert stats.year_shares[2001] == pytest.approx(0.068, abs=0.015)
    assert stats.year_shares[2002] + stats.year_shares[2003] == pytest.approx(0.027, abs=0.01)
    assert stats.male_share == pytest.approx(0.717, abs=0.001)
    assert stats.users_by_age == {1: 222, 18: 1103, 25: 2096, 35: 1193, 45: 550, 50: 496, 56: 380}


@pytest.mark.slow
def test_full_size_reads_back_in_seconds_and_columnar_in_under_one(
    full_size: tuple[MovieLens, Path, float], tmp_path: Path
) -> None:
    data, directory, _ = full_size
    started = time.monotonic()
    read = open_dataset(directory)
    read_seconds = time.monotonic() - started
    assert np.array_equal(read.timestamps, data.timestamps)
    assert np.array_equal(read.movie_ids, data.movie_ids)
    write_columnar(read, tmp_path / "movielens.npz")
    started = time.monotonic()
    columnar = read_columnar(tmp_path / "movielens.npz")
    columnar_seconds = time.monotonic() - started
    assert np.array_equal(columnar.user_ids, data.user_ids)
    # Measured about 1.0 s and 0.02 s; the bounds leave room for a busy shared machine.
    assert read_seconds < 10.0
    assert columnar_seconds < 1.0


@pytest.mark.slow
def test_full_size_is_generated_in_well_under_thirty_seconds(
    full_size: tuple[MovieLens, Path, float],
) -> None:
    # Measured about 4 s including writing the files.
    assert full_size[2] < 30.0


def test_click_rates_agree_with_the_planted_truth() -> None:
    """Clicks per cohort and per decile of true probability against their expectation
    (binomial, |z| < 4 each: 24 comparisons, seed fixed)."""
    data = generate(scale=0.2, seed=5)
    assert data.truth is not None
    cohorts = user_cohorts(data.users)[np.searchsorted(data.users.user_ids, data.user_ids)]
    movies = np.searchsorted(data.movies.movie_ids, data.movie_ids)
    probability = data.truth.click_probability[cohorts, movies]
    clicks = data.ratings >= 4
    groups = [cohorts == c for c in range(len(data.truth.cohort_labels))]
    edges = np.quantile(probability, np.linspace(0, 1, 11))
    deciles = np.clip(np.searchsorted(edges, probability, side="right") - 1, 0, 9)
    groups += [deciles == d for d in range(10)]
    for group in groups:
        expected = probability[group].sum()
        spread = np.sqrt((probability[group] * (1 - probability[group])).sum())
        assert abs(clicks[group].sum() - expected) < 4 * spread
    # The truth spreads: a replay has good and bad movies to tell apart.
    assert np.quantile(probability, 0.9) - np.quantile(probability, 0.1) > 0.3


def test_truth_covers_every_cohort_and_listed_movie() -> None:
    data = generate(scale=0.05, seed=2)
    assert data.truth is not None
    assert len(data.truth.cohort_labels) == 14
    assert "F:18-24" in data.truth.cohort_labels
    assert data.truth.click_probability.shape == (14, len(data.movies))
    assert ((data.truth.click_probability > 0) & (data.truth.click_probability < 1)).all()
    assert set(user_cohorts(data.users).tolist()) <= set(range(14))


def test_same_seed_gives_the_same_data_and_another_seed_other_data() -> None:
    first, again, other = (generate(0.05, seed) for seed in (3, 3, 4))
    assert np.array_equal(first.movie_ids, again.movie_ids)
    assert np.array_equal(first.ratings, again.ratings)
    assert np.array_equal(first.timestamps, again.timestamps)
    assert first.movies.titles.tolist() == again.movies.titles.tolist()
    assert not np.array_equal(first.movie_ids, other.movie_ids)


def test_scale_multiplies_users_movies_and_ratings() -> None:
    data = generate(scale=0.1, seed=1)
    assert (len(data.users), len(data.rated_movie_ids()), len(data.movies)) == (604, 371, 389)
    assert len(data) == 100_021
    per_user = np.bincount(data.user_ids)[1:]
    assert per_user.min() >= 20


def test_tiny_scale_still_has_a_handful_of_everything() -> None:
    data = generate(scale=0.0001, seed=1)
    counts = counts_of(data)
    assert counts.users >= 20 and counts.rated_movies >= 30 and counts.ratings >= 20 * 15
    assert counts.listed_movies > counts.rated_movies


def test_synth_command_writes_files_truth_and_readme(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "synthetic"
    assert main(["dataset", "synth", "--out", str(out), "--scale", "0.02", "--seed", "9"]) == 0
    assert {p.name for p in out.iterdir()} == {
        "ratings.dat",
        "movies.dat",
        "users.dat",
        "truth.npz",
        "README",
    }
    assert (out / "README").read_text().startswith("SYNTHETIC data in the MovieLens 1M format")
    assert "--scale 0.02 --seed 9" in (out / "README").read_text()
    assert open_dataset(out).truth is not None
    printed = capsys.readouterr().out
    assert "ratings per user" in printed and f"wrote {out}" in printed
