"""Download the official ``ml-1m.zip`` from GroupLens and check it.

MovieLens may not be redistributed, so the platform never ships it; an operator
fetches it once. The download streams to a ``.part`` file while its MD5 is
computed, and only a file with the published checksum is kept.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
from tqdm import tqdm

from cineamate.common.errors import DependencyUnavailable, InvalidInput

__all__ = ["ML_1M_FILE", "ML_1M_MD5", "ML_1M_URL", "fetch_movielens"]

ML_1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML_1M_FILE = "ml-1m.zip"
# Published by GroupLens next to the file: https://files.grouplens.org/datasets/movielens/ml-1m.zip.md5
ML_1M_MD5 = "c4d9eecfca2ab87c1945afe126590906"

_CHUNK = 1 << 16


def fetch_movielens(
    directory: Path,
    *,
    url: str = ML_1M_URL,
    md5: str = ML_1M_MD5,
    timeout: float = 30.0,
    progress: bool = False,
) -> Path:
    """``directory/ml-1m.zip``, downloaded unless a file with the right checksum is there."""
    target = directory / ML_1M_FILE
    if target.is_file() and _md5_of(target) == md5:
        return target
    directory.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with (
            httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response,
            partial.open("wb") as file,
        ):
            response.raise_for_status()
            size = int(response.headers.get("content-length", 0)) or None
            with tqdm(
                total=size, unit="B", unit_scale=True, desc=ML_1M_FILE, disable=not progress
            ) as bar:
                for chunk in response.iter_bytes(_CHUNK):
                    file.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DependencyUnavailable(
            f"could not download {url} ({reason}); put {ML_1M_FILE} in {directory} by hand, "
            "or use `cineamate dataset synth --out DIR` for a synthetic stand-in",
            code="unavailable.download",
        ) from exc
    if digest.hexdigest() != md5:
        partial.unlink(missing_ok=True)
        raise InvalidInput(
            f"{url} has MD5 {digest.hexdigest()}, expected {md5}: refused (a changed or "
            "truncated download)",
            code="invalid.checksum",
            field="url",
        )
    partial.replace(target)
    return target


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
