"""Fetch MovieLens from GroupLens, verified by checksum, for when no local copy is given.

The licence forbids redistributing MovieLens, so the project never ships it: it reads a directory
the user names, or downloads the original zip here. Nothing else in the package touches the network.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.request
import uuid
import zipfile
from pathlib import Path

from .errors import DataError

log = logging.getLogger(__name__)

# md5 of the zips as published by GroupLens (<url>.md5) and listed, e.g., in the MovieLens download
# config of github.com/eli-osherovich/papers_with_code (datasets/movielens/dl_config.py).
# "files": sha256 of extracted files, computed from a verified copy of ml-100k.
MOVIELENS = {
    "ml-100k": {
        "url": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "md5": "0e33842e24a9c977be4e0107933c0723",
        "required": ("u.data", "u.item", "u.genre"),
        "files": {"u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"},
    },
    "ml-1m": {
        "url": "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "md5": "c4d9eecfca2ab87c1945afe126590906",
        "required": ("ratings.dat", "movies.dat"),
        "files": {},
    },
}


def fetch(url: str, dest: Path) -> None:
    """Download `url` to `dest`: the package's only network access (tests replace it)."""
    with urllib.request.urlopen(url, timeout=120) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f, 1 << 20)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify_files(name: str, directory: Path) -> None:
    spec = MOVIELENS[name]
    for file in spec["required"]:
        if not (directory / file).is_file():
            raise DataError(f"{name} archive lacks {file}", directory / file)
    for file, expected in spec["files"].items():
        got = file_digest(directory / file)
        if got != expected:
            raise DataError(f"checksum mismatch: sha256 {got}, expected {expected}", directory / file)


def download_movielens(name: str, dest_dir: str | os.PathLike | None = None) -> Path:
    """Download, verify and extract a MovieLens zip into dest_dir (default .padirec/data); return its folder.

    An already extracted, verified copy is reused.
    """
    if name not in MOVIELENS:
        raise ValueError(f"unknown MovieLens dataset {name!r}; expected one of {sorted(MOVIELENS)}")
    spec = MOVIELENS[name]
    dest = Path(dest_dir if dest_dir is not None else Path(".padirec") / "data")
    target = dest / name
    if all((target / f).is_file() for f in spec["required"]):
        _verify_files(name, target)
        return target

    dest.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    archive, tmp = dest / f".{name}-{tag}.zip", dest / f".{name}-{tag}"
    try:
        log.info("downloading %s from %s", name, spec["url"])
        fetch(spec["url"], archive)
        got = file_digest(archive, "md5")
        if got != spec["md5"]:
            raise DataError(f"checksum mismatch for {spec['url']}: md5 {got}, expected {spec['md5']}",
                            archive)
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():  # refuse paths that would escape the folder
                if not (tmp / member).resolve().is_relative_to(tmp.resolve()):
                    raise DataError(f"unsafe path {member!r} in archive", archive)
            zf.extractall(tmp)
        extracted = tmp / name if (tmp / name).is_dir() else tmp
        _verify_files(name, extracted)
        if target.exists():
            shutil.rmtree(target)
        os.replace(extracted, target)
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("%s ready at %s", name, target)
    return target
