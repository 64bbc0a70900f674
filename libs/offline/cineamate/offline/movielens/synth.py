"""A synthetic MovieLens 1M with a planted ground truth.

The MovieLens licence forbids redistribution, so tests, the demo and the
benchmark run on this stand-in: the same files in the same format, calibrated
to ML-1M's published statistics, plus what real data cannot give, each
movie's true click probability per cohort (``truth.npz``), so that regret and
estimator bias are measured against the truth.

How it is drawn, all vectorised and from one seed:

1. Users: gender, age group and occupation with ML-1M's shares; activity
   (ratings per user) from a quantile table of ML-1M's heavy-tailed activity,
   at least 20 each, summing exactly to the rating count.
2. Movies: ids, titles "(year)" and genres; a target popularity per rated movie
   from ML-1M's popularity quantiles.
3. Who rated what: each user draws their movies without replacement with
   probability growing with a movie weight (Gumbel top-k). The weights are
   fitted so that the expected ratings per movie meet the targets, using the
   successive-sampling approximation P(m in a user's k) = 1 - exp(-w_m t_k).
   Movies left without a rating take one from a popular movie, so exactly the
   target number of movies is rated.
4. Truth: logit P(click | cohort, movie) = intercept + movie quality + the
   cohort's affinity for the movie's genres + a cohort x movie term; the
   intercept sets the click (4 or 5 stars) share to ML-1M's 57.5%.
5. Stars: the click is drawn from the truth, then 4 or 5 stars given a click
   and 1, 2 or 3 given none, in ML-1M's proportions.
6. Time: each user joins in 2000 (month weights give the spring-to-autumn
   burst), rates most movies within days and some later, thinning to 2003.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from cineamate.common.errors import InvalidInput
from cineamate.offline.movielens.dataset import MovieLens, from_tables, write_columnar
from cineamate.offline.movielens.format import (
    GENRES,
    Movies,
    Ratings,
    Users,
    write_files,
)
from cineamate.offline.movielens.stats import ML_1M, statistics_of
from cineamate.offline.movielens.truth import (
    CLICK_RATING,
    COHORT_LABELS,
    TRUTH_FILE,
    GroundTruth,
    user_cohorts,
    write_truth,
)

__all__ = [
    "DEFAULT_SEED",
    "SYNTHETIC_COLUMNAR_NAME",
    "SynthSizes",
    "ensure_synthetic",
    "generate",
    "synth_sizes",
    "write_synthetic",
]

DEFAULT_SEED = 20_000_425
README_FILE = "README"
SYNTHETIC_COLUMNAR_NAME = "movielens.npz"

# --- ML-1M's published figures the generator is calibrated to ---------------------------

_MOVIE_ID_MAX = 3_952  # movies.dat lists 3,883 ids between 1 and 3,952
_MIN_USER_RATINGS = 20  # every ML-1M user rated at least 20 movies
# (quantile, ratings per user) and (quantile, ratings per rated movie), interpolated in
# log space; the totals are then fitted exactly.
_USER_ACTIVITY = (
    (0.0, 20),
    (0.25, 44),
    (0.5, 96),
    (0.75, 208),
    (0.9, 360),
    (0.99, 760),
    (1.0, 2314),
)
_MOVIE_POPULARITY = (
    (0.0, 1),
    (0.01, 1),
    (0.1, 7),
    (0.25, 33),
    (0.5, 123.5),
    (0.75, 350),
    (0.9, 660),
    (0.97, 1200),
    (0.99, 1900),
    (1.0, 3428),
)
_STAR_SHARES = {1: 0.056, 2: 0.108, 3: 0.261, 4: 0.349, 5: 0.226}
_MALE_SHARE = 0.717
_USERS_BY_AGE = {1: 222, 18: 1_103, 25: 2_096, 35: 1_193, 45: 550, 50: 496, 56: 380}
# Users per occupation code 0..20 in ML-1M (approximately).
_OCCUPATION_WEIGHTS = (
    711, 528, 267, 173, 759, 112, 236, 679, 17, 92, 195,
    129, 388, 142, 302, 144, 241, 497, 70, 72, 281,
)  # fmt: skip
# Movies per genre in ML-1M's movies.dat, in GENRES order.
_GENRE_WEIGHTS = (
    503, 283, 105, 251, 1200, 211, 127, 1603, 68, 44,
    343, 114, 106, 471, 276, 492, 143, 68,
)  # fmt: skip
_GENRES_PER_MOVIE = (0.50, 0.34, 0.12, 0.04)  # share of movies with 1, 2, 3, 4 genres
_FIRST_RATING = 956_703_932  # 2000-04-25 23:05:32 UTC
_LAST_RATING = 1_046_454_590  # 2003-02-28 17:49:50 UTC
# Share of users joining in each month of 2000, from the first rating on: the burst.
_JOIN_MONTHS = {4: 0.03, 5: 0.12, 6: 0.11, 7: 0.14, 8: 0.20, 9: 0.08, 10: 0.08, 11: 0.16, 12: 0.08}
_DAY = 86_400
_SESSION_DAYS = 0.5  # mean delay of a rating in a user's first visits
_RETURN_DAYS = 380.0  # mean delay of a rating on a later visit
_RETURN_SHARE = (0.4, 2.5)  # Beta parameters of a user's share of later ratings

# --- the truth's shape --------------------------------------------------------------------

_QUALITY_SD = 0.9  # movie quality, logit scale
_POPULARITY_QUALITY = 0.35  # popular movies are liked more (per sd of log popularity)
_GENRE_AFFINITY_SD = 0.4  # cohort x genre
_COHORT_MOVIE_SD = 0.25  # cohort x movie
_CLICK_SHARE = _STAR_SHARES[4] + _STAR_SHARES[5]

_USER_CHUNK = 1_024


@dataclass(frozen=True)
class SynthSizes:
    """How much the generator draws at a scale."""

    users: int
    listed_movies: int
    rated_movies: int
    ratings: int
    movie_id_max: int
    min_user_ratings: int


def synth_sizes(scale: float) -> SynthSizes:
    """ML-1M's sizes times ``scale``; ratings at most half the user x movie matrix."""
    if not (math.isfinite(scale) and scale > 0):
        raise InvalidInput(f"scale {scale} is not a positive number", field="scale")
    users = max(20, round(ML_1M.users * scale))
    rated = max(30, round(ML_1M.rated_movies * scale))
    listed = rated + max(1, round((ML_1M.listed_movies - ML_1M.rated_movies) * scale))
    id_max = listed + round((_MOVIE_ID_MAX - ML_1M.listed_movies) * scale)
    min_per_user = min(_MIN_USER_RATINGS, rated // 2)
    ratings = round(ML_1M.ratings * scale)
    ratings = max(users * min_per_user, min(ratings, users * rated // 2))
    return SynthSizes(users, listed, rated, ratings, id_max, min_per_user)


def generate(scale: float = 1.0, seed: int = DEFAULT_SEED, *, progress: bool = False) -> MovieLens:
    """A synthetic data set with its truth; the same ``scale`` and ``seed`` give the same data."""
    sizes = synth_sizes(scale)
    rng = np.random.default_rng(seed)
    with _steps(progress) as step:
        step("users")
        users = _users(sizes.users, rng)
        cohorts = user_cohorts(users)
        step("movies")
        movies = _movies(sizes, rng)
        rated = np.sort(rng.choice(sizes.listed_movies, sizes.rated_movies, replace=False))
        step("activity")
        per_user = _user_activity(sizes, rng)
        targets = _movie_targets(sizes, rng)
        weights = _fit_weights(targets, per_user)
        step("who rated what")
        user_rows, movie_rows = _draw_pairs(per_user, weights, rng)
        movie_rows = _rate_every_movie(movie_rows, sizes.rated_movies, rng)
        movie_rows = rated[movie_rows]
        step("truth")
        truth = _truth(movies, rated, targets, cohorts[user_rows], movie_rows, rng)
        step("stars")
        probability = truth.click_probability[cohorts[user_rows], movie_rows]
        stars = _stars(rng.random(len(user_rows)) < probability, rng)
        step("timestamps")
        timestamps = _timestamps(user_rows, sizes.users, rng)
        step("sorting")
        ratings = Ratings(
            user_ids=users.user_ids[user_rows],
            movie_ids=movies.movie_ids[movie_rows],
            ratings=stars,
            timestamps=timestamps,
        )
        return from_tables(ratings, movies, users, truth)


def write_synthetic(
    directory: Path, scale: float = 1.0, seed: int = DEFAULT_SEED, *, progress: bool = False
) -> MovieLens:
    """Generate and write ratings.dat, movies.dat, users.dat, truth.npz and a README."""
    data = generate(scale, seed, progress=progress)
    # ML-1M's ratings.dat lists each user's ratings together.
    by_user = np.lexsort((data.timestamps, data.user_ids))
    ratings = Ratings(
        data.user_ids[by_user],
        data.movie_ids[by_user],
        data.ratings[by_user],
        data.timestamps[by_user],
    )
    write_files(directory, ratings, data.movies, data.users)
    assert data.truth is not None
    write_truth(data.truth, data.movies.movie_ids, directory / TRUTH_FILE)
    (directory / README_FILE).write_text(_readme(data, scale, seed))
    return data


def ensure_synthetic(
    directory: Path,
    *,
    scale: float = 1.0,
    seed: int = DEFAULT_SEED,
    columnar_name: str = SYNTHETIC_COLUMNAR_NAME,
) -> Path:
    """The columnar file of the synthetic set in ``directory``, written with the .dat files
    on the first call and reused after; a set cut short never counts as written."""
    columnar = directory / columnar_name
    if columnar.is_file():
        return columnar
    directory.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{directory.name}.", dir=directory.parent))
    try:
        data = write_synthetic(partial, scale, seed)
        write_columnar(data, partial / columnar_name)
        shutil.rmtree(directory, ignore_errors=True)
        partial.rename(directory)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return columnar


def _readme(data: MovieLens, scale: float, seed: int) -> str:
    figures = "\n".join(f"- {line}" for line in statistics_of(data).lines())
    return f"""SYNTHETIC data in the MovieLens 1M format. This is not MovieLens.

Written by `cineamate dataset synth --scale {scale:g} --seed {seed}`: the same command
writes the same files. No rating here was made by a person; the users, movies and
titles are invented. The files follow the ML-1M format (ratings.dat, movies.dat,
users.dat: "::"-separated, Latin-1) and its published statistics.

truth.npz holds the planted ground truth: `truth_click_probability[c, m]` is the
probability that a user of cohort c (gender x age group, labels in
`truth_cohort_labels`) gives movie `truth_movie_ids[m]` {CLICK_RATING} stars or more.
The ratings were drawn from it.

Figures of this data set:
{figures}
"""


@contextmanager
def _steps(progress: bool) -> Iterator[Callable[[str], None]]:
    names = 8
    with tqdm(total=names, desc="synth", unit="step", disable=not progress, leave=False) as bar:
        started = False

        def step(name: str) -> None:
            nonlocal started
            if started:
                bar.update(1)
            started = True
            bar.set_postfix_str(name)

        yield step
        bar.update(1)


# --- users and movies ---------------------------------------------------------------------


def _users(n: int, rng: np.random.Generator) -> Users:
    ages = np.repeat(list(_USERS_BY_AGE), _apportion(list(_USERS_BY_AGE.values()), n))
    genders = np.where(np.arange(n) < round(_MALE_SHARE * n), "M", "F")
    occupation_p = np.array(_OCCUPATION_WEIGHTS) / sum(_OCCUPATION_WEIGHTS)
    zip_codes = np.char.zfill(rng.integers(1_000, 100_000, n).astype(np.str_), 5)
    return Users(
        user_ids=np.arange(1, n + 1, dtype=np.int32),
        genders=rng.permutation(genders),
        ages=rng.permutation(ages).astype(np.int8),
        occupations=rng.choice(21, n, p=occupation_p).astype(np.int8),
        zip_codes=zip_codes,
    )


def _movies(sizes: SynthSizes, rng: np.random.Generator) -> Movies:
    n = sizes.listed_movies
    ids = np.sort(rng.choice(np.arange(1, sizes.movie_id_max + 1), n, replace=False))
    years = np.maximum(1919, 2000 - np.floor(rng.exponential(9.0, n))).astype(int)
    genre_p = np.array(_GENRE_WEIGHTS) / sum(_GENRE_WEIGHTS)
    how_many = rng.choice(len(_GENRES_PER_MOVIE), n, p=_GENRES_PER_MOVIE) + 1
    genres = [
        "|".join(GENRES[g] for g in sorted(rng.choice(len(GENRES), k, replace=False, p=genre_p)))
        for k in how_many
    ]
    titles = [f"{name} ({year})" for name, year in zip(_titles(n, rng), years, strict=True)]
    return Movies(
        movie_ids=ids.astype(np.int32),
        titles=np.array(titles, dtype=np.str_),
        genres=np.array(genres, dtype=np.str_),
    )


_ADJECTIVES = (
    "Silent", "Last", "Broken", "Golden", "Hidden", "Crimson", "Lonely", "Wild", "Midnight",
    "Frozen", "Secret", "Lost", "Burning", "Distant", "Quiet", "Electric", "Restless", "Little",
    "Dark", "Bright", "Final", "Endless", "Fallen", "Sweet", "Savage", "Velvet", "Iron",
    "Hollow", "Northern", "Forgotten", "Crooked", "Perfect", "Dangerous", "Invisible", "Long",
)  # fmt: skip
_NOUNS = (
    "River", "Summer", "Road", "City", "Heart", "Game", "Night", "Garden", "Kingdom", "Letter",
    "Island", "Storm", "Mirror", "Promise", "Station", "Harbor", "Witness", "Stranger", "Dream",
    "Empire", "Valley", "Train", "Angel", "Hunter", "Season", "Shadow", "Bridge", "Fortune",
    "Wedding", "Detective", "Orchard", "Signal", "Circus", "Planet", "Frontier", "Ghost",
)  # fmt: skip
# Titles in other languages (nouns, links, articles), with ML-1M's habit of moving the
# article to the end: "Ami de mon amie, L' (1987)".
_FOREIGN = (
    (("Été", "Rivière", "Ami", "Nuit", "Château", "Fille", "Mère", "Hôtel", "Rêve", "Frère"),
     ("de la", "du", "de mon", "des", "sans"), ("L'", "La", "Le", "Les")),
    (("Año", "Niño", "Canción", "Señora", "Corazón", "Noche", "Isla", "Sueño"),
     ("de la", "del", "y el", "sin"), ("El", "La", "Los")),
    (("Mädchen", "Straße", "Brücke", "Nächte", "König", "Tür", "Stadt", "Spiel"),
     ("und die", "ohne", "der"), ("Die", "Der", "Das")),
)  # fmt: skip


def _titles(n: int, rng: np.random.Generator) -> list[str]:
    titles: list[str] = []
    seen: set[str] = set()
    while len(titles) < n:
        kind = rng.random()
        adjective, noun, other = (
            _ADJECTIVES[rng.integers(len(_ADJECTIVES))],
            _NOUNS[rng.integers(len(_NOUNS))],
            _NOUNS[rng.integers(len(_NOUNS))],
        )
        if kind < 0.45:
            title = f"{adjective} {noun}"
        elif kind < 0.65:
            title = f"{adjective} {noun}, The"
        elif kind < 0.85:
            title = f"{noun} of the {other}"
        elif kind < 0.92:
            title = f"{adjective} {noun} {rng.integers(2, 5)}"
        else:
            nouns, links, articles = _FOREIGN[rng.integers(len(_FOREIGN))]
            first, second = rng.choice(len(nouns), 2, replace=False)
            link = links[rng.integers(len(links))]
            article = articles[rng.integers(len(articles))]
            title = f"{nouns[first]} {link} {nouns[second].lower()}, {article}"
        if title not in seen:
            seen.add(title)
            titles.append(title)
    return titles


# --- who rated what ---------------------------------------------------------------------------


def _quantile_draw(
    table: tuple[tuple[float, float], ...], n: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """``n`` values spread over the quantile table (stratified), in random order."""
    levels = (np.arange(n) + rng.random(n)) / n
    quantiles, values = zip(*table, strict=True)
    drawn: NDArray[np.float64] = np.exp(np.interp(levels, quantiles, np.log(values)))
    return rng.permutation(drawn)


def _fit_total(raw: NDArray[np.float64], total: int, low: float, high: float) -> NDArray[np.int64]:
    """Integers in [low, high], summing to ``total``, proportional to ``raw - low`` above low."""
    excess = np.maximum(raw - low, 0.0)

    def spread(factor: float) -> NDArray[np.float64]:
        result: NDArray[np.float64] = np.clip(low + factor * excess, low, high)
        return result

    lo, hi = 0.0, 1.0
    while spread(hi).sum() < total and hi < 1e12:
        hi *= 2
    for _ in range(100):
        middle = (lo + hi) / 2
        lo, hi = (middle, hi) if spread(middle).sum() < total else (lo, middle)
    values = spread(hi)
    counts = np.floor(values).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        fraction = np.where(counts < high, values - counts, -1.0)
        counts[np.argsort(-fraction, kind="stable")[:short]] += 1
    elif short < 0:
        fraction = np.where(counts > low, values - counts, 2.0)
        counts[np.argsort(fraction, kind="stable")[:-short]] -= 1
    return counts


def _apportion(weights: list[int], total: int) -> NDArray[np.int64]:
    """``total`` split in proportion to ``weights``, by largest remainder."""
    exact = np.array(weights, dtype=np.float64) * total / sum(weights)
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(counts - exact, kind="stable")[: total - counts.sum()]] += 1
    return counts


def _user_activity(sizes: SynthSizes, rng: np.random.Generator) -> NDArray[np.int64]:
    raw = _quantile_draw(_USER_ACTIVITY, sizes.users, rng)
    return _fit_total(raw, sizes.ratings, sizes.min_user_ratings, sizes.rated_movies)


def _movie_targets(sizes: SynthSizes, rng: np.random.Generator) -> NDArray[np.float64]:
    raw = _quantile_draw(_MOVIE_POPULARITY, sizes.rated_movies, rng)
    # A movie is rated at most once per user; keep room for the draw's randomness.
    targets = _fit_total(raw, sizes.ratings, 1, max(1, int(0.9 * sizes.users)))
    return targets.astype(np.float64)


def _fit_weights(
    targets: NDArray[np.float64], per_user: NDArray[np.int64], rounds: int = 30
) -> NDArray[np.float64]:
    """Movie weights whose Gumbel top-k draws give each movie about its target ratings."""
    # Users grouped into 64 activity levels: the inclusion probability is smooth in k.
    order = np.sort(per_user)
    groups = np.array_split(order, min(64, len(order)))
    levels = np.array([group.mean() for group in groups])
    sizes = np.array([len(group) for group in groups], dtype=np.float64)
    weights: NDArray[np.float64] = targets / targets.sum()
    for _ in range(rounds):
        t = _inclusion_scale(weights, levels)
        expected: NDArray[np.float64] = sizes @ -np.expm1(-np.outer(t, weights))
        if np.abs(expected / targets - 1).max() < 1e-3:
            break
        weights = weights * targets / np.maximum(expected, 1e-12)
        weights /= weights.sum()
    return weights


def _inclusion_scale(
    weights: NDArray[np.float64], levels: NDArray[np.float64]
) -> NDArray[np.float64]:
    """t_k with sum_m 1 - exp(-w_m t_k) = k, per level k (Newton from below: monotone)."""
    t: NDArray[np.float64] = levels / weights.sum()
    for _ in range(60):
        taken = np.exp(-np.outer(t, weights))
        gap = levels - (len(weights) - taken.sum(axis=1))
        step = gap / (taken @ weights)
        t = t + step
        if np.all(np.abs(gap) < 1e-6 * levels):
            break
    return t


def _draw_pairs(
    per_user: NDArray[np.int64], weights: NDArray[np.float64], rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Each user's ``per_user`` distinct movies: the top keys of log(weight) + Gumbel noise."""
    log_weights = np.log(weights)
    by_activity = np.argsort(per_user, kind="stable")
    user_rows: list[NDArray[np.int64]] = []
    movie_rows: list[NDArray[np.int64]] = []
    for start in range(0, len(by_activity), _USER_CHUNK):
        chunk = by_activity[start : start + _USER_CHUNK]
        wanted = per_user[chunk]
        most = int(wanted.max())
        keys = log_weights - np.log(-np.log(rng.random((len(chunk), len(weights)))))
        if most < len(weights):
            top = np.argpartition(-keys, most - 1, axis=1)[:, :most]
        else:
            top = np.broadcast_to(np.arange(len(weights)), keys.shape)
        ranked = np.take_along_axis(
            top, np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1), axis=1
        )
        taken = np.arange(most) < wanted[:, None]
        user_rows.append(np.repeat(chunk, wanted))
        movie_rows.append(ranked[taken])
    return np.concatenate(user_rows), np.concatenate(movie_rows)


def _rate_every_movie(
    movie_rows: NDArray[np.int64], n_movies: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Give each unrated movie one rating taken from a movie with many.

    No user rated an unrated movie, so the move cannot repeat a (user, movie) pair; a
    donor movie has more ratings than there are moves, so it stays rated.
    """
    counts = np.bincount(movie_rows, minlength=n_movies)
    unrated = np.flatnonzero(counts == 0)
    if unrated.size == 0:
        return movie_rows
    donors = np.flatnonzero(counts[movie_rows] > unrated.size + 1)
    moved = rng.choice(donors, unrated.size, replace=False)
    result = movie_rows.copy()
    result[moved] = rng.permutation(unrated)
    return result


# --- truth, stars and time ---------------------------------------------------------------------


def _truth(
    movies: Movies,
    rated: NDArray[np.int64],
    targets: NDArray[np.float64],
    rating_cohorts: NDArray[np.int64],
    rating_movies: NDArray[np.int64],
    rng: np.random.Generator,
) -> GroundTruth:
    n_cohorts, n_movies = len(COHORT_LABELS), len(movies)
    popularity = np.full(n_movies, np.log(0.5))
    popularity[rated] = np.log(targets)
    popularity = (popularity - popularity.mean()) / max(popularity.std(), 1e-9)
    quality = rng.normal(0.0, _QUALITY_SD, n_movies) + _POPULARITY_QUALITY * popularity
    affinity = rng.normal(0.0, _GENRE_AFFINITY_SD, (n_cohorts, len(GENRES)))
    membership = np.array(
        [[genre in movie.split("|") for genre in GENRES] for movie in movies.genres.tolist()],
        dtype=np.float64,
    )
    genre_effect = affinity @ (membership / membership.sum(axis=1, keepdims=True)).T
    logit = quality + genre_effect + rng.normal(0.0, _COHORT_MOVIE_SD, (n_cohorts, n_movies))
    # The intercept that makes the share of clicks among the drawn ratings ML-1M's.
    rated_pairs = np.bincount(
        rating_cohorts * n_movies + rating_movies, minlength=n_cohorts * n_movies
    ).reshape(n_cohorts, n_movies)
    intercept = 0.0
    for _ in range(50):
        p = _sigmoid(logit + intercept)
        gap = _CLICK_SHARE * rated_pairs.sum() - (rated_pairs * p).sum()
        intercept += gap / (rated_pairs * p * (1 - p)).sum()
        if abs(gap) < 1e-6 * rated_pairs.sum():
            break
    return GroundTruth(COHORT_LABELS, _sigmoid(logit + intercept))


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    result: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-x))
    return result


def _stars(clicks: NDArray[np.bool_], rng: np.random.Generator) -> NDArray[np.int8]:
    """4 or 5 stars for a click, 1 to 3 otherwise, in ML-1M's proportions within each."""
    u = rng.random(len(clicks))
    p5 = _STAR_SHARES[5] / _CLICK_SHARE
    p1 = _STAR_SHARES[1] / (1 - _CLICK_SHARE)
    p2 = _STAR_SHARES[2] / (1 - _CLICK_SHARE)
    liked = 4 + (u < p5)
    disliked = 1 + (u >= p1).astype(np.int64) + (u >= p1 + p2)
    return np.where(clicks, liked, disliked).astype(np.int8)


def _timestamps(
    user_rows: NDArray[np.int64], n_users: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    join = _join_times(n_users, rng)[user_rows]
    returns = rng.beta(*_RETURN_SHARE, n_users)[user_rows] > rng.random(len(user_rows))
    mean = np.where(returns, _RETURN_DAYS, _SESSION_DAYS) * _DAY
    # An exponential delay truncated at the last rating: inverse CDF, nothing clipped.
    room = 1.0 - np.exp(-(_LAST_RATING - join) / mean)
    delay = -mean * np.log1p(-rng.random(len(join)) * room)
    timestamps: NDArray[np.int64] = (join + delay).astype(np.int64)
    timestamps[np.argmin(timestamps)] = _FIRST_RATING
    timestamps[np.argmax(timestamps)] = _LAST_RATING
    return timestamps


def _join_times(n_users: int, rng: np.random.Generator) -> NDArray[np.float64]:
    months = list(_JOIN_MONTHS)
    starts = np.array(
        [_FIRST_RATING]
        + [
            np.datetime64(f"2000-{m:02d}-01").astype("datetime64[s]").astype(int)
            for m in months[1:]
        ]
        + [np.datetime64("2001-01-01").astype("datetime64[s]").astype(int)],
        dtype=np.float64,
    )
    month = rng.choice(len(months), n_users, p=np.array(list(_JOIN_MONTHS.values())))
    joined: NDArray[np.float64] = starts[month] + rng.random(n_users) * np.diff(starts)[month]
    return joined
