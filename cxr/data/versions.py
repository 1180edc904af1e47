"""Data versions as DVC names them: the md5 of a folder's file listing, and fetching a version from a DVC remote.

The version a run records is computed from the files it actually read, the way `dvc add` computes the md5 in
`data.dvc`, so a run on a modified or different folder can never claim the committed version.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
from pathlib import Path

import fsspec

from cxr.errors import CxrError
from cxr.params import project_root

CHUNK = 1 << 20


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dir_listing(folder: str | Path) -> list[dict]:
    """DVC's listing of a folder: [{"md5", "relpath"}] sorted by relpath (posix separators)."""
    folder = Path(folder)
    entries = []
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            path = Path(dirpath) / name
            entries.append({"md5": file_md5(path), "relpath": path.relative_to(folder).as_posix()})
    return sorted(entries, key=lambda e: e["relpath"])


def listing_md5(entries: list[dict]) -> str:
    """The `.dir` md5 DVC gives a listing (what `data.dvc` records)."""
    text = json.dumps(sorted(entries, key=lambda e: e["relpath"]), sort_keys=True)
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest() + ".dir"


def dir_md5(folder: str | Path) -> str:
    """The DVC version of a folder's current content, e.g. 'e007…b6e8.dir'."""
    return listing_md5(dir_listing(folder))


def _remote_path(remote: str, md5: str) -> str:
    return f"{remote.rstrip('/')}/files/md5/{md5[:2]}/{md5[2:]}"


def fetch_version(remote: str, version: str, dest: str | Path) -> Path:
    """Download the folder that DVC version `version` names from DVC remote `remote` (a path or s3:// URL)
    into `dest`, checking every file's md5. S3 credentials and endpoint come from the environment
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL)."""
    entries = _read_listing(remote, version)
    dest = Path(dest)
    for entry in entries:
        target = dest / entry["relpath"]
        target.parent.mkdir(parents=True, exist_ok=True)
        with fsspec.open(_remote_path(remote, entry["md5"]), "rb") as src, open(target, "wb") as out:
            while chunk := src.read(CHUNK):
                out.write(chunk)
        if file_md5(target) != entry["md5"]:
            raise CxrError(f"{entry['relpath']} of data version {version} on {remote} does not match its md5.")
    return dest


def missing_on_remote(remote: str, version: str) -> list[str]:
    """The files of DVC version `version` that remote `remote` lacks ([] when all are there); raises
    CxrError when the version's listing itself is not there. Reads no file content."""
    entries = _read_listing(remote, version)
    fs, _ = fsspec.core.url_to_fs(remote)
    return [e["relpath"] for e in entries if not fs.exists(_remote_path(remote, e["md5"]))]


def _read_listing(remote: str, version: str) -> list[dict]:
    """The `.dir` listing of `version` on the remote, checked against its md5."""
    if not version.endswith(".dir"):
        raise CxrError(f"Data version '{version}' is not a DVC folder version (it should end in .dir, as in data.dvc).")
    listing_url = _remote_path(remote, version.removesuffix(".dir")) + ".dir"
    try:
        with fsspec.open(listing_url, "rt") as fh:
            entries = json.load(fh)
    except FileNotFoundError as exc:
        raise CxrError(
            f"Data version {version} is not on the DVC remote {remote}; push it there (`dvc push -r REMOTE`) "
            "or run on a version that was pushed."
        ) from exc
    except Exception as exc:  # network, credentials, bad URL: fsspec raises many types
        raise CxrError(
            f"The DVC remote {remote} could not be read ({exc.__class__.__name__}: {str(exc)[:200]}); "
            "check its URL and the AWS_* credentials of this step."
        ) from exc
    if listing_md5(entries) != version:
        raise CxrError(
            f"The listing of data version {version} on {remote} does not match its md5; the remote is damaged."
        )
    return entries


def default_remote(root: Path) -> str:
    """The repository's default DVC remote (`core.remote` in .dvc/config) as a path relative to `root` or
    a URL; "" when the repository has none (e.g. inside a container image)."""
    config = root / ".dvc" / "config"
    if not config.is_file():
        return ""
    parser = configparser.ConfigParser()
    parser.read(config)
    name = parser.get("core", "remote", fallback="")
    url = parser.get(f"'remote \"{name}\"'", "url", fallback="") if name else ""
    if not url or "://" in url:
        return url
    return os.path.relpath((config.parent / url).resolve(), root.resolve())


def repository_path(folder: str, root: Path) -> str:
    """`folder` relative to the repository when it lies inside it (how data.dvc names it), else as given."""
    try:
        return Path(folder).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return folder


DVC_REMOTE = "s3"  # the DVC project's remote that CI pushes to and the cluster's ingest fetches from


def project_dvc_remote() -> str:
    """The URL of the DVC project's remote `s3` (.dvc/config, with .dvc/config.local over it): the one
    definition of where the data lives; cluster.dvc_remote only overrides it."""
    from dvc.repo import Repo  # DVC's repository machinery (about 1 s): only where a remote is resolved

    try:
        return Repo(str(project_root())).config["remote"][DVC_REMOTE]["url"]
    except KeyError as exc:
        raise CxrError(
            f"The DVC project has no remote '{DVC_REMOTE}' (.dvc/config); add it (dvc remote add {DVC_REMOTE} "
            "s3://bucket/path) or set cluster.dvc_remote."
        ) from exc
