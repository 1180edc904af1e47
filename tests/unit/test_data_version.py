"""Data versions computed the way DVC computes them, and fetched from a real DVC remote (the in-repo one)."""

import shutil

import pytest
import yaml

from cxr.data.versions import dir_md5, fetch_version
from cxr.errors import CxrError
from cxr.params import project_root
from cxr.steps.context import resolve_data

ROOT = project_root()
COMMITTED = yaml.safe_load((ROOT / "data.dvc").read_text())["outs"][0]


def test_the_bundled_sample_hashes_to_the_version_data_dvc_records():
    assert dir_md5(ROOT / COMMITTED["path"]) == COMMITTED["md5"]


def test_a_version_is_fetched_from_the_dvc_remote_and_checked(tmp_path):
    fetched = fetch_version(str(ROOT / "dvc-remote"), COMMITTED["md5"], tmp_path / "data")
    assert dir_md5(fetched) == COMMITTED["md5"]
    assert len(list(fetched.rglob("*.png"))) == COMMITTED["nfiles"]


def test_an_unknown_version_names_the_remote_and_the_fix(tmp_path):
    with pytest.raises(CxrError, match="is not on the DVC remote .*dvc push"):
        fetch_version(str(ROOT / "dvc-remote"), "0" * 32 + ".dir", tmp_path / "data")


def test_a_run_records_the_version_it_read_not_the_one_it_was_told(tmp_path, capsys):
    folder = shutil.copytree(ROOT / COMMITTED["path"], tmp_path / "sample")
    assert resolve_data(str(folder), COMMITTED["md5"]) == (str(folder), COMMITTED["md5"])
    next(folder.glob("COVID/*.png")).unlink()
    _, version = resolve_data(str(folder), COMMITTED["md5"])
    assert version != COMMITTED["md5"] and "not the requested" in capsys.readouterr().out


def test_resolve_data_fetches_when_given_a_remote(tmp_path):
    data_dir, version = resolve_data("/nowhere", COMMITTED["md5"], str(ROOT / "dvc-remote"), str(tmp_path / "src"))
    assert version == COMMITTED["md5"] and data_dir == str(tmp_path / "src")


def test_check_remote_finds_a_pushed_version_and_names_a_missing_file(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    cxr = str(Path(sys.executable).parent / "cxr")
    remote = tmp_path / "remote"
    shutil.copytree(ROOT / "dvc-remote", remote)
    out = subprocess.run([cxr, "data", "check-remote", "--remote", str(remote)], capture_output=True, text=True)
    assert out.returncode == 0 and f"data version {COMMITTED['md5']}: listing and every file" in out.stdout
    md5 = COMMITTED["md5"].removesuffix(".dir")
    first = json.loads((remote / "files" / "md5" / md5[:2] / f"{md5[2:]}.dir").read_text())[0]["md5"]
    (remote / "files" / "md5" / first[:2] / first[2:]).unlink()
    out = subprocess.run([cxr, "data", "check-remote", "--remote", str(remote)], capture_output=True, text=True)
    assert out.returncode == 2 and "1 of its files are not" in out.stderr and "dvc push" in out.stderr
    assert "Traceback" not in out.stderr
