"""The ML-1M file format: the reader reads what the generator writes, byte for byte, and
names the file and line of anything malformed."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cineamate.common.errors import InvalidInput
from cineamate.offline.movielens import (
    MovieLens,
    Movies,
    Ratings,
    Users,
    open_dataset,
    read_columnar,
    read_files,
    write_columnar,
    write_files,
    write_synthetic,
)

_FILES = ("ratings.dat", "movies.dat", "users.dat")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[MovieLens, Path]:
    """A synthetic data set at 5% of ML-1M, written once for the module."""
    directory = tmp_path_factory.mktemp("ml-small")
    return write_synthetic(directory, scale=0.05, seed=11), directory


def _copy_files(directory: Path, to: Path) -> None:
    for file in _FILES:
        shutil.copy(directory / file, to / file)


def _replace_line(path: Path, line: int, text: str) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = text.encode("latin-1")
    path.write_bytes(b"\n".join(lines))


def _same(a: MovieLens, b: MovieLens) -> None:
    for name in ("user_ids", "movie_ids", "ratings", "timestamps"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert getattr(a, name).dtype == getattr(b, name).dtype, name
    for table in ("movies", "users"):
        left, right = getattr(a, table), getattr(b, table)
        for name in left.__dataclass_fields__:
            assert np.array_equal(getattr(left, name), getattr(right, name)), f"{table}.{name}"


def test_reader_reads_the_generators_files_as_generated(small: tuple[MovieLens, Path]) -> None:
    data, directory = small
    read = open_dataset(directory)
    _same(data, read)
    assert read.truth is not None and data.truth is not None
    assert read.truth.cohort_labels == data.truth.cohort_labels
    assert np.array_equal(read.truth.click_probability, data.truth.click_probability)


def test_files_written_from_what_was_read_are_byte_identical(
    small: tuple[MovieLens, Path], tmp_path: Path
) -> None:
    _, directory = small
    write_files(tmp_path, *read_files(directory))
    for name in _FILES:
        assert (tmp_path / name).read_bytes() == (directory / name).read_bytes(), name


def test_official_zip_layout_reads_like_the_folder(
    small: tuple[MovieLens, Path], tmp_path: Path
) -> None:
    data, directory = small
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for name in (*_FILES, "README"):
            zipped.write(directory / name, f"ml-1m/{name}")
    read = open_dataset(archive)
    _same(data, read)
    assert read.truth is None


def test_latin1_titles_round_trip(tmp_path: Path) -> None:
    movies = Movies(
        movie_ids=np.array([1, 7], dtype=np.int32),
        titles=np.array(["Ami de mon amie, L' (1987)", "Été de la rivière, L' (1999)"]),
        genres=np.array(["Comedy|Romance", "Drama"]),
    )
    users = Users(
        user_ids=np.array([3], dtype=np.int32),
        genders=np.array(["F"]),
        ages=np.array([25], dtype=np.int8),
        occupations=np.array([20], dtype=np.int8),
        zip_codes=np.array(["02139"]),
    )
    ratings = Ratings(
        user_ids=np.array([3, 3], dtype=np.int32),
        movie_ids=np.array([7, 1], dtype=np.int32),
        ratings=np.array([5, 1], dtype=np.int8),
        timestamps=np.array([978300760, 978302109], dtype=np.int64),
    )
    write_files(tmp_path, ratings, movies, users)
    assert (tmp_path / "movies.dat").read_bytes().splitlines()[1] == (
        "7::Été de la rivière, L' (1999)::Drama".encode("latin-1")
    )
    assert (tmp_path / "ratings.dat").read_bytes() == (b"3::7::5::978300760\n3::1::1::978302109\n")
    read = open_dataset(tmp_path)
    assert read.movies.titles.tolist() == movies.titles.tolist()
    assert read.movie_ids.tolist() == [7, 1]


@pytest.mark.parametrize(
    ("name", "line", "text", "complaint"),
    [
        ("ratings.dat", 5, "1::2::7::978300760", "Rating '7' is not one of 1..5"),
        ("ratings.dat", 9, "1::2::3", "3 fields, expected 4"),
        ("ratings.dat", 2, "1::x::3::978300760", "MovieID 'x' is not a positive integer"),
        ("ratings.dat", 40, "1::2::4::-5", "Timestamp '-5' is not unix seconds"),
        ("ratings.dat", 3, "", "1 fields, expected 4"),
        ("ratings.dat", 12, "0::2::4::978300760", "UserID '0' is not a positive integer"),
        ("movies.dat", 3, "3::Grumpier Old Men (1995)::Comedy|Cartoon", "unknown genre 'Cartoon'"),
        ("movies.dat", 8, "8::Tom and Huck (1995)", "2 fields, expected 3"),
        ("users.dat", 2, "2::X::56::16::70072", "Gender 'X' is not F or M"),
        ("users.dat", 6, "6::F::19::9::55117", "Age '19' is not one of"),
        ("users.dat", 4, "4::M::45::21::02460", "Occupation '21' is not in 0..20"),
    ],
)
def test_malformed_line_is_rejected_with_file_and_line_number(
    small: tuple[MovieLens, Path],
    tmp_path: Path,
    name: str,
    line: int,
    text: str,
    complaint: str,
) -> None:
    _copy_files(small[1], tmp_path)
    _replace_line(tmp_path / name, line, text)
    with pytest.raises(InvalidInput, match=f"^{name} line {line}: ") as raised:
        open_dataset(tmp_path)
    assert complaint in raised.value.message


def test_rating_of_an_unlisted_movie_names_its_line(
    small: tuple[MovieLens, Path], tmp_path: Path
) -> None:
    _copy_files(small[1], tmp_path)
    _replace_line(tmp_path / "ratings.dat", 7, "1::999999::4::978300760")
    with pytest.raises(InvalidInput, match=r"^ratings.dat line 7: movie 999999 is not in"):
        open_dataset(tmp_path)


def test_second_rating_of_the_same_movie_by_a_user_names_both_lines(
    small: tuple[MovieLens, Path], tmp_path: Path
) -> None:
    _copy_files(small[1], tmp_path)
    user, movie, _, _ = (tmp_path / "ratings.dat").read_text().split("\n", 1)[0].split("::")
    _replace_line(tmp_path / "ratings.dat", 21, f"{user}::{movie}::3::978300760")
    with pytest.raises(InvalidInput, match=r"^ratings.dat line 21: .* already at line 1$"):
        open_dataset(tmp_path)


def test_missing_file_is_named(small: tuple[MovieLens, Path], tmp_path: Path) -> None:
    _, directory = small
    shutil.copy(directory / "ratings.dat", tmp_path / "ratings.dat")
    with pytest.raises(InvalidInput, match=r"no movies\.dat, users\.dat"):
        open_dataset(tmp_path)


def test_columnar_file_holds_the_same_data_and_truth(
    small: tuple[MovieLens, Path], tmp_path: Path
) -> None:
    data, _ = small
    path = tmp_path / "movielens.npz"
    write_columnar(data, path)
    read = open_dataset(path)
    _same(data, read)
    assert read.truth is not None and data.truth is not None
    assert np.array_equal(read.truth.click_probability, data.truth.click_probability)
    assert not list(tmp_path.glob("*.part"))


def test_columnar_reader_refuses_a_file_that_is_not_one(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, something=np.zeros(3))
    with pytest.raises(InvalidInput, match="columnar version"):
        read_columnar(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(InvalidInput, match="is not a columnar MovieLens file"):
        read_columnar(path)
