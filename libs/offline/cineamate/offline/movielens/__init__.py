"""MovieLens 1M: the exact file format, a calibrated synthetic generator, fetch and load.

    >>> from cineamate.offline.movielens import open_dataset, user_cohorts
    >>> data = open_dataset(Path("synthetic"))  # doctest: +SKIP
    >>> cohorts = user_cohorts(data.users)
    >>> truth = data.truth.click_probability  # (14 cohorts, listed movies); None for real data

``open_dataset`` reads ``ml-1m.zip``, a folder of the ``.dat`` files (the
generator's output, with its ``truth.npz``) or the columnar ``.npz`` that
``cineamate dataset load`` writes.
"""

from cineamate.offline.movielens.dataset import (
    MovieLens,
    from_tables,
    open_dataset,
    read_columnar,
    write_columnar,
)
from cineamate.offline.movielens.format import (
    AGE_GROUPS,
    GENRES,
    Movies,
    Ratings,
    Users,
    read_files,
    write_files,
)
from cineamate.offline.movielens.stats import (
    ML_1M,
    Counts,
    Statistics,
    counts_of,
    statistics_of,
)
from cineamate.offline.movielens.synth import (
    DEFAULT_SEED,
    SYNTHETIC_COLUMNAR_NAME,
    ensure_synthetic,
    generate,
    write_synthetic,
)
from cineamate.offline.movielens.truth import (
    CLICK_RATING,
    COHORT_LABELS,
    GroundTruth,
    user_cohorts,
)

__all__ = [
    "AGE_GROUPS",
    "CLICK_RATING",
    "COHORT_LABELS",
    "DEFAULT_SEED",
    "GENRES",
    "ML_1M",
    "SYNTHETIC_COLUMNAR_NAME",
    "Counts",
    "GroundTruth",
    "MovieLens",
    "Movies",
    "Ratings",
    "Statistics",
    "Users",
    "counts_of",
    "ensure_synthetic",
    "from_tables",
    "generate",
    "open_dataset",
    "read_columnar",
    "read_files",
    "statistics_of",
    "user_cohorts",
    "write_columnar",
    "write_files",
    "write_synthetic",
]
