"""The MovieLens 1M file format, read and written exactly.

ML-1M ships three ``::``-separated, Latin-1 encoded files (see the README in
``ml-1m.zip``)::

    ratings.dat  UserID::MovieID::Rating::Timestamp      1,000,209 lines
    movies.dat   MovieID::Title::Genres                  genres joined by "|"
    users.dat    UserID::Gender::Age::Occupation::Zip-code

They come either in the official zip (members under ``ml-1m/``) or as a folder.
The ratings file is parsed by pyarrow after turning ``::`` into ``,`` (a Python
loop per line takes ten times longer); only when that fails is the file walked
line by line, to name the first bad line in the error. The two small files are
parsed line by line, which also lets every error name its line.
"""

from __future__ import annotations

import io
import itertools
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from numpy.typing import NDArray

from cineamate.common.errors import InvalidInput

__all__ = [
    "AGE_GROUPS",
    "ENCODING",
    "GENRES",
    "MOVIES_FILE",
    "OCCUPATIONS",
    "RATINGS_FILE",
    "USERS_FILE",
    "Movies",
    "Ratings",
    "Users",
    "read_files",
    "write_files",
]

RATINGS_FILE = "ratings.dat"
MOVIES_FILE = "movies.dat"
USERS_FILE = "users.dat"
ENCODING = "latin-1"

# The age codes of users.dat and the range each stands for (ML-1M README).
AGE_GROUPS: dict[int, str] = {
    1: "under-18",
    18: "18-24",
    25: "25-34",
    35: "35-44",
    45: "45-49",
    50: "50-55",
    56: "56+",
}
OCCUPATIONS = range(21)
GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

_SEPARATOR = "::"
_GENRE_SET = frozenset(GENRES)
_ZIP_CODE = re.compile(r"^[0-9A-Za-z-]{1,10}$")
_RATING_FIELDS = ("UserID", "MovieID", "Rating", "Timestamp")

T = TypeVar("T")


@dataclass(frozen=True)
class Ratings:
    """The columns of ratings.dat, in file order."""

    user_ids: NDArray[np.int32]
    movie_ids: NDArray[np.int32]
    ratings: NDArray[np.int8]
    timestamps: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.user_ids)


class _Table:
    """Rows keyed by the sorted ids of the first column; the columns in the file's order."""

    def columns(self) -> list[NDArray[Any]]:
        """The column arrays, the ids first."""
        return [getattr(self, field.name) for field in fields(cast(Any, self))]

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Each row as a tuple of Python values, in id order."""
        return zip(*(column.tolist() for column in self.columns()), strict=True)

    def __len__(self) -> int:
        return len(self.columns()[0])

    def index_of(self, key: int) -> int:
        """The row of id ``key``; an unknown id raises InvalidInput."""
        ids = self.columns()[0]
        row = int(np.searchsorted(ids, key))
        if row == len(ids) or ids[row] != key:
            raise InvalidInput(f"no {type(self).__name__.lower()[:-1]} {key}", field="id")
        return row


@dataclass(frozen=True)
class Movies(_Table):
    """The listed movies, sorted by id; ``genres`` as in the file, joined by ``|``.

    >>> movies.titles[movies.index_of(1)]  # doctest: +SKIP
    'Toy Story (1995)'
    """

    movie_ids: NDArray[np.int32]
    titles: NDArray[np.str_]
    genres: NDArray[np.str_]


@dataclass(frozen=True)
class Users(_Table):
    """The users, sorted by id: gender ``F`` or ``M``, age code (AGE_GROUPS), occupation 0..20."""

    user_ids: NDArray[np.int32]
    genders: NDArray[np.str_]
    ages: NDArray[np.int8]
    occupations: NDArray[np.int8]
    zip_codes: NDArray[np.str_]


# --- reading ---------------------------------------------------------------------------


def read_files(path: Path) -> tuple[Ratings, Movies, Users]:
    """The three files of ``path``: ``ml-1m.zip``, or a folder holding them (or ``ml-1m/``)."""
    raw = _read_raw(path)
    return (
        parse_ratings(raw[RATINGS_FILE]),
        parse_movies(raw[MOVIES_FILE]),
        parse_users(raw[USERS_FILE]),
    )


def _read_raw(path: Path) -> dict[str, bytes]:
    names = (RATINGS_FILE, MOVIES_FILE, USERS_FILE)
    if path.is_dir():
        folder = path / "ml-1m" if not (path / RATINGS_FILE).exists() else path
        missing = [name for name in names if not (folder / name).is_file()]
        if missing:
            raise InvalidInput(f"{path}: no {', '.join(missing)}", field="path")
        return {name: (folder / name).read_bytes() for name in names}
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist", field="path")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {Path(member).name: member for member in archive.namelist()}
            missing = [name for name in names if name not in members]
            if missing:
                raise InvalidInput(f"{path}: no {', '.join(missing)} in the zip", field="path")
            return {name: archive.read(members[name]) for name in names}
    except zipfile.BadZipFile as exc:
        raise InvalidInput(f"{path} is neither a folder nor a zip file: {exc}") from exc


def parse_ratings(data: bytes) -> Ratings:
    """ratings.dat's bytes as columns; a bad line raises InvalidInput naming it."""
    try:
        table = pa_csv.read_csv(
            io.BytesIO(data.replace(b"::", b",")),
            read_options=pa_csv.ReadOptions(column_names=list(_RATING_FIELDS)),
            parse_options=pa_csv.ParseOptions(ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(
                column_types={
                    "UserID": pa.int32(),
                    "MovieID": pa.int32(),
                    "Rating": pa.int8(),
                    "Timestamp": pa.int64(),
                }
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        _parse_lines(data, RATINGS_FILE, _rating_line)
        raise InvalidInput(f"{RATINGS_FILE}: {exc}", field=RATINGS_FILE) from exc
    # An empty line is a row of nulls; filled with 0 it fails the checks below.
    empty = np.zeros(table.num_rows, dtype=bool)
    for name in _RATING_FIELDS:
        if table.column(name).null_count:
            empty |= np.asarray(table.column(name).is_null().to_numpy())
    columns = [np.asarray(table.column(name).fill_null(0).to_numpy()) for name in _RATING_FIELDS]
    ratings = Ratings(*columns)
    bad = (
        empty
        | (ratings.user_ids <= 0)
        | (ratings.movie_ids <= 0)
        | (ratings.ratings < 1)
        | (ratings.ratings > 5)
        | (ratings.timestamps < 0)
    )
    if bad.any():
        # Row i is line i + 1: empty lines are rows too.
        line = int(np.argmax(bad)) + 1
        text = data.split(b"\n", line)[line - 1].decode(ENCODING)
        _parse_line(text, RATINGS_FILE, line, _rating_line)
        raise InvalidInput(f"{RATINGS_FILE} line {line}: {text[:80]!r}", field=RATINGS_FILE)
    return ratings


def parse_movies(data: bytes) -> Movies:
    """movies.dat's bytes, sorted by movie id; a bad line raises InvalidInput naming it."""
    return Movies(*_parse_table(data, MOVIES_FILE, _movie_line, (np.int32, np.str_, np.str_)))


def parse_users(data: bytes) -> Users:
    """users.dat's bytes, sorted by user id; a bad line raises InvalidInput naming it."""
    dtypes = (np.int32, np.str_, np.int8, np.int8, np.str_)
    return Users(*_parse_table(data, USERS_FILE, _user_line, dtypes))


def _parse_table(
    data: bytes, name: str, parse: Callable[[list[str]], tuple[Any, ...]], dtypes: Sequence[type]
) -> list[NDArray[Any]]:
    """The columns of a file keyed by its first field, sorted by it; an id listed twice fails."""
    rows = sorted(_parse_lines(data, name, parse), key=lambda row: row[0])
    repeated = [a[0] for a, b in itertools.pairwise(rows) if a[0] == b[0]]
    if repeated:
        raise InvalidInput(f"{name}: id {repeated[0]} is listed twice", field=name)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in dtypes]
    return [np.array(column, dtype=dtype) for column, dtype in zip(columns, dtypes, strict=True)]


def _parse_lines(data: bytes, name: str, parse: Callable[[list[str]], T]) -> list[T]:
    """Every line of ``data`` through ``parse``; the first failure names file and line."""
    lines = data.decode(ENCODING).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [_parse_line(line, name, number, parse) for number, line in enumerate(lines, start=1)]


def _parse_line(line: str, name: str, number: int, parse: Callable[[list[str]], T]) -> T:
    try:
        return parse(line.rstrip("\r").split(_SEPARATOR))
    except ValueError as exc:
        raise InvalidInput(f"{name} line {number}: {exc}: {line[:80]!r}", field=name) from None


def _fields(fields: list[str], names: Sequence[str]) -> None:
    if len(fields) != len(names):
        raise ValueError(f"{len(fields)} fields, expected {len(names)} ({'::'.join(names)})")


def _positive(text: str, field: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"{field} {text!r} is not a positive integer")
    return int(text)


def _rating_line(fields: list[str]) -> tuple[int, int, int, int]:
    _fields(fields, _RATING_FIELDS)
    user_id = _positive(fields[0], "UserID")
    movie_id = _positive(fields[1], "MovieID")
    if fields[2] not in ("1", "2", "3", "4", "5"):
        raise ValueError(f"Rating {fields[2]!r} is not one of 1..5")
    if not fields[3].isdigit():
        raise ValueError(f"Timestamp {fields[3]!r} is not unix seconds")
    return user_id, movie_id, int(fields[2]), int(fields[3])


def _movie_line(fields: list[str]) -> tuple[int, str, str]:
    _fields(fields, ("MovieID", "Title", "Genres"))
    movie_id = _positive(fields[0], "MovieID")
    if not fields[1].strip():
        raise ValueError("empty Title")
    unknown = [genre for genre in fields[2].split("|") if genre not in _GENRE_SET]
    if unknown:
        raise ValueError(f"unknown genre {unknown[0]!r}")
    return movie_id, fields[1], fields[2]


def _user_line(fields: list[str]) -> tuple[int, str, int, int, str]:
    _fields(fields, ("UserID", "Gender", "Age", "Occupation", "Zip-code"))
    user_id = _positive(fields[0], "UserID")
    if fields[1] not in ("F", "M"):
        raise ValueError(f"Gender {fields[1]!r} is not F or M")
    if not fields[2].isdigit() or int(fields[2]) not in AGE_GROUPS:
        raise ValueError(f"Age {fields[2]!r} is not one of {sorted(AGE_GROUPS)}")
    if not fields[3].isdigit() or int(fields[3]) not in OCCUPATIONS:
        raise ValueError(f"Occupation {fields[3]!r} is not in 0..20")
    if not _ZIP_CODE.match(fields[4]):
        raise ValueError(f"Zip-code {fields[4]!r} is not a postal code")
    return user_id, fields[1], int(fields[2]), int(fields[3]), fields[4]


# --- writing ---------------------------------------------------------------------------


def write_files(directory: Path, ratings: Ratings, movies: Movies, users: Users) -> None:
    """Write ratings.dat, movies.dat and users.dat into ``directory`` in the ML-1M format."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / RATINGS_FILE).write_bytes(_ratings_bytes(ratings))
    for name, table in ((MOVIES_FILE, movies), (USERS_FILE, users)):
        lines = (_SEPARATOR.join(map(str, row)) + "\n" for row in table.rows())
        (directory / name).write_bytes(_encoded("".join(lines), name))


def _encoded(text: str, name: str) -> bytes:
    try:
        return text.encode(ENCODING)
    except UnicodeEncodeError as exc:
        line = text.count("\n", 0, exc.start) + 1
        raise InvalidInput(
            f"{name} line {line}: {text[exc.start]!r} is not a {ENCODING} character", field=name
        ) from None


def _ratings_bytes(ratings: Ratings) -> bytes:
    # Integers only, so the CSV writer's commas can become "::" without ambiguity.
    table = pa.table(
        {
            "UserID": ratings.user_ids,
            "MovieID": ratings.movie_ids,
            "Rating": ratings.ratings,
            "Timestamp": ratings.timestamps,
        }
    )
    sink = io.BytesIO()
    pa_csv.write_csv(
        table, sink, write_options=pa_csv.WriteOptions(include_header=False, quoting_style="none")
    )
    return sink.getvalue().replace(b",", b"::")
