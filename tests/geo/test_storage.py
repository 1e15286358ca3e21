"""geo.io.storage against a real S3-compatible server (moto) on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geo.errors import InputError, UnreachableError
from geo.io.storage import (
    StagedOutput,
    check_storage,
    exists,
    gdal_env,
    gdal_path,
    list_files,
    read_json,
)
from tests.support.cli import cli_process
from tests.support.s3 import S3Server, new_bucket, s3_filesystem, s3_server

REPO = Path(__file__).resolve().parents[2]
SCENE = REPO / "examples/data/nebraska_center_pivots_landsat/nebraska_landsat_albers_30m.tif"


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as running:
        yield running


@pytest.fixture
def bucket(server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    return new_bucket(server, monkeypatch)


def _run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`code` in a new interpreter that imports this checkout (and the given environment)."""
    path = os.pathsep.join([str(REPO), str(REPO / "convlora" / "src")])
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **(env or {}), "PYTHONPATH": path},
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_gdal_reads_a_window_of_an_object_with_ranged_requests(
    server: S3Server, bucket: str
) -> None:
    url = f"s3://{bucket}/scenes/{SCENE.name}"
    s3_filesystem().put_file(str(SCENE), url)
    window = Window(200, 300, 64, 64)
    with rasterio.Env(**gdal_env(url)), rasterio.open(gdal_path(url)) as src:
        remote = src.read(window=window)
    with rasterio.open(SCENE) as src:
        local = src.read(window=window)

    np.testing.assert_array_equal(remote, local)
    gets = server.gets(f"/{bucket}/scenes/{SCENE.name}")
    assert gets and all(r.range for r in gets)
    assert sum(r.bytes_sent for r in gets) < SCENE.stat().st_size / 4


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://b/k/s.tif", "/vsis3/b/k/s.tif"),
        ("gs://b/k/s.tif", "/vsigs/b/k/s.tif"),
        ("az://container/k/s.tif", "/vsiaz/container/k/s.tif"),
        ("abfs://container@acct.dfs.core.windows.net/k/s.tif", "/vsiaz/container/k/s.tif"),
        ("https://example.org/s.tif", "/vsicurl/https://example.org/s.tif"),
        ("scenes/s.tif", "scenes/s.tif"),
    ],
)
def test_gdal_path_maps_each_scheme(url: str, expected: str) -> None:
    assert gdal_path(url) == expected


def test_gdal_env_follows_the_s3_endpoint_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    assert gdal_env("s3://b/k")["AWS_S3_ENDPOINT"] == "127.0.0.1:9000"
    assert gdal_env("s3://b/k")["AWS_HTTPS"] == "NO"
    assert gdal_env("s3://b/k")["AWS_VIRTUAL_HOSTING"] == "FALSE"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://minio.internal:9443")
    assert gdal_env("s3://b/k")["AWS_S3_ENDPOINT"] == "minio.internal:9443"
    assert gdal_env("s3://b/k")["AWS_HTTPS"] == "YES"
    assert gdal_env("scene.tif") == {}


def test_gdal_env_gives_gdal_the_adlfs_account_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "a2V5")
    env = gdal_env("az://container/s.tif")
    assert (env["AZURE_STORAGE_ACCOUNT"], env["AZURE_STORAGE_ACCESS_KEY"]) == ("acct", "a2V5")


def test_staged_output_uploads_in_order_then_removes_local_copies(
    server: S3Server, bucket: str, tmp_path: Path
) -> None:
    url = f"s3://{bucket}/predictions"
    with StagedOutput(url, staging_root=tmp_path) as out:
        assert out.folder.parent == tmp_path
        shutil.copy(SCENE, out.folder / "s_classes.tif")
        (out.folder / "s_manifest.json").write_text('{"done": true}')
        published = out.publish(["s_classes.tif", "s_manifest.json"])
        assert not any(out.folder.iterdir())

    assert published == [f"{url}/s_classes.tif", f"{url}/s_manifest.json"]
    assert s3_filesystem().cat_file(f"{url}/s_classes.tif") == SCENE.read_bytes()
    assert read_json(f"{url}/s_manifest.json") == {"done": True}
    puts = [r.path.rsplit("/", 1)[-1] for r in server.requests if r.method == "PUT"]
    assert puts[-2:] == ["s_classes.tif", "s_manifest.json"]
    assert not out.folder.exists()


def test_a_set_replaced_removes_its_manifest_before_the_first_upload(
    bucket: str, tmp_path: Path
) -> None:
    """A published set, then another set of the same names whose run stops after its first
    upload (its manifest never comes): no manifest stays to mark the mixture finished."""
    url = f"s3://{bucket}/predictions"
    names = ["s_classes.tif", "s_manifest.json"]
    with StagedOutput(url, staging_root=tmp_path) as out:
        (out.folder / names[0]).write_bytes(b"first")
        (out.folder / names[1]).write_text('{"done": true}')
        out.publish(names)
    with StagedOutput(url, staging_root=tmp_path) as out:
        (out.folder / names[0]).write_bytes(b"second")
        with pytest.raises(FileNotFoundError):
            out.publish(names)
    assert s3_filesystem().cat_file(f"{url}/{names[0]}") == b"second"
    assert not exists(f"{url}/{names[1]}")


def test_an_interrupted_run_resumes_from_its_staging_folder(bucket: str, tmp_path: Path) -> None:
    url = f"s3://{bucket}/predictions"
    killed = _run_python(
        "import os, signal\n"
        "from geo.io.storage import StagedOutput\n"
        f"with StagedOutput({url!r}, staging_root={str(tmp_path)!r}) as out:\n"
        "    (out.folder / 'part.bin').write_bytes(b'rows 0-99')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    assert killed.returncode == -signal.SIGKILL
    assert not exists(f"{url}/part.bin")

    with StagedOutput(url, staging_root=tmp_path) as out:
        assert (out.folder / "part.bin").read_bytes() == b"rows 0-99"
        (out.folder / "s.tif").write_bytes(b"all rows")
        with pytest.raises(FileNotFoundError):  # stopped half-way through publishing
            out.publish(["s.tif", "s_manifest.json"])
    assert exists(f"{url}/s.tif")
    assert (out.folder / "s.tif").exists()  # kept until every file is up

    with StagedOutput(url, staging_root=tmp_path) as out:
        (out.folder / "s_manifest.json").write_text("{}")
        out.publish(["s.tif", "s_manifest.json", "part.bin"])
    assert read_json(f"{url}/s_manifest.json") == {}
    assert not out.folder.exists()


def test_staging_a_local_folder_writes_in_place(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with StagedOutput(str(target)) as out:
        (out.folder / "s.tif").write_bytes(b"x")
        assert out.publish(["s.tif"]) == [str(target / "s.tif")]
    assert (target / "s.tif").read_bytes() == b"x"


def test_list_files_gives_versions_that_change_with_the_content(
    bucket: str, tmp_path: Path
) -> None:
    s3 = s3_filesystem()
    for name, data in [("a.tif", b"first"), ("b.tif", b"second"), ("notes.txt", b"-")]:
        s3.pipe_file(f"{bucket}/scenes/{name}", data)
    listed = list_files(f"s3://{bucket}/scenes/", "*.tif")
    assert listed == {
        f"s3://{bucket}/scenes/a.tif": hashlib.md5(b"first").hexdigest(),
        f"s3://{bucket}/scenes/b.tif": hashlib.md5(b"second").hexdigest(),
    }
    s3.pipe_file(f"{bucket}/scenes/a.tif", b"changed")
    relisted = list_files(f"s3://{bucket}/scenes", "*.tif")
    assert relisted[f"s3://{bucket}/scenes/a.tif"] != listed[f"s3://{bucket}/scenes/a.tif"]
    assert relisted[f"s3://{bucket}/scenes/b.tif"] == listed[f"s3://{bucket}/scenes/b.tif"]
    assert list(list_files(f"s3://{bucket}/scenes/b.tif")) == [f"s3://{bucket}/scenes/b.tif"]

    (tmp_path / "c.tif").write_bytes(b"one")
    local = list_files(str(tmp_path))
    (tmp_path / "c.tif").write_bytes(b"three")
    assert list(local) == [str(tmp_path / "c.tif")]
    assert list_files(str(tmp_path)) != local


def test_exists_and_read_json(bucket: str, tmp_path: Path) -> None:
    s3_filesystem().pipe_file(f"{bucket}/out/m.json", json.dumps({"fingerprint": "abc"}).encode())
    assert exists(f"s3://{bucket}/out/m.json") and exists(f"s3://{bucket}/out")
    assert not exists(f"s3://{bucket}/out/other.json")
    assert read_json(f"s3://{bucket}/out/m.json") == {"fingerprint": "abc"}
    assert read_json(f"s3://{bucket}/out/other.json") is None
    assert read_json(str(tmp_path / "missing.json")) is None


def test_check_storage_accepts_what_works(bucket: str) -> None:
    s3_filesystem().pipe_file(f"{bucket}/scenes/s.tif", b"x")
    check_storage(f"s3://{bucket}/scenes/s.tif", "input")
    check_storage(f"s3://{bucket}/scenes", "input")
    check_storage(f"s3://{bucket}/new/predictions", "output")
    check_storage("any/local/path", "input")


@pytest.mark.parametrize(
    ("url", "role", "message"),
    [
        ("ftp://host/s.tif", "input", "ftp://host/s.tif: unsupported storage scheme ftp://"),
        ("https://example.org/out", "output", "https://example.org/out: https:// is read-only"),
        ("s3://{bucket}/missing.tif", "input", "s3://{bucket}/missing.tif: not found"),
        ("s3://no-such-bucket/out", "output", "bucket or container no-such-bucket not found"),
        ("s3://{bucket}/file.tif", "output", "s3://{bucket}/file.tif: exists and is not a folder"),
    ],
)
def test_check_storage_refuses_with_one_line(
    bucket: str, url: str, role: str, message: str
) -> None:
    s3_filesystem().pipe_file(f"{bucket}/file.tif", b"x")
    with pytest.raises(InputError) as refused:
        check_storage(url.format(bucket=bucket), role)  # type: ignore[arg-type]
    assert message.format(bucket=bucket) in str(refused.value)
    assert "\n" not in str(refused.value)


def test_check_storage_refuses_without_credentials(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(InputError, match=r"^s3://.*: no credentials for s3://"):
        check_storage(f"s3://{bucket}/scenes", "input")


def test_check_storage_refuses_an_unreachable_endpoint(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with s3_server() as stopped:
        endpoint = stopped.endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    with pytest.raises(UnreachableError, match="cannot reach the storage endpoint"):
        check_storage(f"s3://{bucket}/scenes", "input")


def test_the_command_line_refuses_an_unreachable_endpoint_in_one_line(
    pivots_run: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Only the refusal, with exit status 1 (a service that does not answer: a later run may
    succeed): botocore's INFO line about where it found the endpoint is left out."""
    with s3_server() as stopped:
        endpoint = stopped.endpoint
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "key",
           "AWS_SECRET_ACCESS_KEY": "secret"}  # fmt: skip
    done = cli_process("predict", SCENE, "--model", pivots_run, "--out", "s3://bucket/out", env=env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "convlora-geo predict: error: s3://bucket/out: cannot reach the storage endpoint (Could "
        f'not connect to the endpoint URL: "{endpoint}/bucket/out")'
    ]


def test_check_storage_names_the_extras_when_a_backend_is_missing(bucket: str) -> None:
    code = (
        "import sys\n"
        "sys.modules['s3fs'] = None  # as if convlora-geo[cloud] were not installed\n"
        "from geo.errors import InputError\n"
        "from geo.io.storage import check_storage\n"
        "try:\n"
        f"    check_storage('s3://{bucket}/scenes', 'input')\n"
        "except InputError as exc:\n"
        "    print(exc)\n"
    )
    refused = _run_python(code)
    assert refused.stdout.strip() == (
        f"s3://{bucket}/scenes: s3:// needs the cloud extras: pip install 'convlora-geo[cloud]'"
    )
    s3_filesystem().pipe_file(f"{bucket}/scenes/s.tif", b"x")
    accepted = _run_python(code.replace("sys.modules['s3fs'] = None", "import s3fs"))
    assert accepted.returncode == 0 and accepted.stdout == "", accepted.stderr
