"""`routerforge router import` treats an archive as data: one crafted archive per attack, all refused.

Attacks: an http embedder that would send every prompt to another server, a sentence-transformers model
path, array names with ``../`` (or a symlinked array), absolute and ``../`` paths in the router's state,
a compression bomb over the byte cap (refused from the headers, before inflating), too many entries,
symlink / hard-link / device / FIFO members. The target directory never appears and the staging
directory is always cleaned up.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from routerforge.cli.main import main
from routerforge.cli.routing_archive import write_archive
from routerforge.config import EmbedSettings
from routerforge.data.matrix import ScoreMatrix
from routerforge.errors import ArtifactError
from routerforge.policy.trained import EMBEDDER_JSON, train_router
from routerforge.routers.registry import load_router

EVIL_URL = "http://attacker.invalid:9/v1"


def _train(kind: str, out: Path) -> Path:
    topics = ["algebra", "poetry"]
    prompts = [f"A question on {topics[i % 2]} {topics[i % 2]}, variant {i}." for i in range(30)]
    scores = np.array([[1.0, 0.0] if i % 2 == 0 else [0.0, 1.0] for i in range(30)])
    matrix = ScoreMatrix(
        name="toy",
        keys=[str(i) for i in range(30)],
        prompts=prompts,
        models=["a", "b"],
        scores=scores,
        costs=np.full_like(scores, np.nan),
    )
    trained = train_router(kind, matrix, None, EmbedSettings(provider="hash", cache=False), out)
    trained.close()
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small router directory (router.json + arrays + embedder.json), trained once with the hash embedder."""
    return _train("cluster", tmp_path_factory.mktemp("trained") / "cluster")


@pytest.fixture(scope="module")
def trained_knn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A knn router: its Qdrant Edge shard is a directory (~165 MB of preallocated files)."""
    return _train("knn", tmp_path_factory.mktemp("trained") / "knn")


@pytest.fixture
def env(rf_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    monkeypatch.delenv("ROUTERFORGE_EMBED__URL", raising=False)
    yield rf_home


def _copy(trained: Path, tmp_path: Path) -> Path:
    out = tmp_path / "src"
    shutil.copytree(trained, out)
    return out


def _edit_json(path: Path, **changes: object) -> None:
    doc = json.loads(path.read_text())
    for key, value in changes.items():
        target = doc
        *parents, last = key.split("__")
        for p in parents:
            target = target[p]
        target[last] = value
    path.write_text(json.dumps(doc))


def _import(archive: Path, target: Path, *extra: str) -> int:
    return main(["router", "import", str(archive), str(target), *extra])


def _refused(code: int, target: Path, capsys: pytest.CaptureFixture[str], words: str) -> None:
    err = capsys.readouterr().err
    assert code == 2, err
    assert words in " ".join(err.split()), err
    assert not target.exists()
    assert not any(p.name.startswith(".import-") for p in target.parent.iterdir())  # staging removed


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


# -- the honest path ----------------------------------------------------------------------------------
def test_import_round_trip_is_private_and_loads(
    env: Path, trained_knn: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _copy(trained_knn, tmp_path)
    (src / "notes").mkdir(mode=0o755)
    (src / "notes" / "readme.txt").write_text("made by a colleague")
    archive = tmp_path / "r.tar.gz"
    write_archive(src, archive)
    target = tmp_path / "imported"
    assert _import(archive, target) == 0, capsys.readouterr().err
    modes = {p.relative_to(target).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in target.rglob("*")}
    assert modes["router.json"] == 0o600 and modes["notes"] == 0o700 and modes["notes/readme.txt"] == 0o600
    assert all(m in (0o600, 0o700) for m in modes.values()), modes
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    router = load_router(target)
    try:
        assert router.models == ["a", "b"]
    finally:
        router.close()


# -- the embedder is the operator's --------------------------------------------------------------------
def test_http_embedder_to_another_server_is_refused(
    env: Path,
    trained: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = _copy(trained, tmp_path)
    _edit_json(
        src / EMBEDDER_JSON,
        settings__provider="http",
        settings__url=EVIL_URL,
        settings__model="text-embedding-3-small",
    )
    archive = tmp_path / "evil.tar.gz"
    write_archive(src, archive)
    target = tmp_path / "imported"
    _refused(_import(archive, target), target, capsys, "a router may not choose where prompts are sent")

    monkeypatch.setenv("ROUTERFORGE_EMBED__URL", "http://127.0.0.1:8080/v1")  # the operator's own server
    _refused(_import(archive, target), target, capsys, "your embed.url is 'http://127.0.0.1:8080/v1'")

    monkeypatch.setenv("ROUTERFORGE_EMBED__URL", EVIL_URL + "/")  # the operator trusts it: accepted
    assert _import(archive, target) == 0, capsys.readouterr().err


def test_sentence_transformers_path_is_refused(
    env: Path, trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _copy(trained, tmp_path)
    _edit_json(
        src / EMBEDDER_JSON, settings__provider="sentence-transformers", settings__model="/tmp/evil-model"
    )
    archive = tmp_path / "st.tar.gz"
    write_archive(src, archive)
    target = tmp_path / "imported"
    _refused(_import(archive, target), target, capsys, "sentence-transformers model '/tmp/evil-model'")


def test_invalid_embedder_settings_are_refused(
    env: Path, trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _copy(trained, tmp_path)
    _edit_json(src / EMBEDDER_JSON, settings__provider="exec")
    archive = tmp_path / "bad.tar.gz"
    write_archive(src, archive)
    target = tmp_path / "imported"
    _refused(_import(archive, target), target, capsys, "holds invalid embedding settings")


# -- paths stay inside the router directory ------------------------------------------------------------
@pytest.mark.parametrize("name", ["../outside", "../../outside", "sub/../../outside", "/tmp/outside"])
def test_array_names_with_paths_are_refused(
    env: Path, trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    src = _copy(trained, tmp_path)
    np.save(tmp_path / "outside.npy", np.zeros(3))  # what the name points at, next to the directory
    doc = json.loads((src / "router.json").read_text())
    doc["arrays"] = [*doc["arrays"], name]
    (src / "router.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="invalid array"):
        load_router(src)
    archive = tmp_path / "arr.tar.gz"
    write_archive(src, archive)
    target = tmp_path / "imported"
    _refused(_import(archive, target), target, capsys, "invalid array")


def test_array_symlinked_out_of_the_directory_is_refused(trained: Path, tmp_path: Path) -> None:
    src = _copy(trained, tmp_path)
    name = json.loads((src / "router.json").read_text())["arrays"][0]
    np.save(tmp_path / "outside.npy", np.load(src / f"{name}.npy"))
    (src / f"{name}.npy").unlink()
    (src / f"{name}.npy").symlink_to(tmp_path / "outside.npy")
    with pytest.raises(ArtifactError, match=f"invalid array '{name}'"):
        load_router(src)


def test_paths_in_the_knn_state_are_never_used(
    env: Path, trained_knn: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An absolute (or ../) shard path in router.json's state: never opened, never deleted on close."""
    src = _copy(trained_knn, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep me")
    for where in (str(elsewhere), "../elsewhere"):
        _edit_json(src / "router.json", state__shard=where, state__index={"kind": "edge", "path": where})
        try:
            router = load_router(src)
        except ArtifactError:
            pass  # refusing is fine too
        else:
            router.close()  # closing deletes the router's private shard: it must not be `elsewhere`
        assert [p.name for p in elsewhere.iterdir()] == ["precious.txt"]
        assert (elsewhere / "precious.txt").read_text() == "keep me"
    _edit_json(src / "router.json", state__index={"kind": str(elsewhere)})  # not a known index kind
    with pytest.raises(ArtifactError, match="index reference"):
        load_router(src)
    archive = tmp_path / "shard.tar.gz"
    write_archive(src, archive)
    target = tmp_path / "imported"
    _refused(_import(archive, target), target, capsys, "index reference")


# -- archive members -------------------------------------------------------------------------------
def test_compression_bomb_over_the_byte_cap_is_refused(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 4 MiB of zeros compress to a few KB; with --max-mib 1 the import stops at the header
    archive = _tar(
        tmp_path / "bomb.tar.gz", [_file("router.json", b"{}"), _file("zeros.npy", bytes(4 << 20))]
    )
    assert archive.stat().st_size < 64 << 10
    target = tmp_path / "imported"
    _refused(_import(archive, target, "--max-mib", "1"), target, capsys, "unpacks to more than 1048576 bytes")


def test_default_byte_cap_refuses_before_inflating(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A header that declares 2 GiB, and no data at all: refused by the default 1 GiB cap from the header
    # alone (reading the member would fail on the missing data instead).
    info = tarfile.TarInfo("huge.npy")
    info.size = 2 << 30
    archive = tmp_path / "huge.tar.gz"
    archive.write_bytes(gzip.compress(info.tobuf(format=tarfile.PAX_FORMAT)))
    target = tmp_path / "imported"
    _refused(_import(archive, target), target, capsys, f"unpacks to more than {1 << 30} bytes")


def test_too_many_entries_are_refused(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = _tar(tmp_path / "many.tar.gz", [_file(f"f{i}.json", b"{}") for i in range(12)])
    target = tmp_path / "imported"
    _refused(_import(archive, target, "--max-files", "10"), target, capsys, "more than 10 entries")


def _link(name: str, kind: bytes, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize(
    "member",
    [
        _link("router.json", tarfile.SYMTYPE, "/etc/passwd"),
        _link("arr.npy", tarfile.SYMTYPE, "../../outside.npy"),
        _link("router.json", tarfile.LNKTYPE, "/etc/passwd"),
        _link("copy.json", tarfile.LNKTYPE, "router.json"),  # even a hard link inside the archive
        _link("fifo", tarfile.FIFOTYPE, ""),
        _link("dev", tarfile.CHRTYPE, ""),
    ],
    ids=["symlink-abs", "symlink-rel", "hardlink-abs", "hardlink-inside", "fifo", "device"],
)
def test_link_and_special_members_are_refused(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], member: tuple[tarfile.TarInfo, None]
) -> None:
    archive = _tar(tmp_path / "links.tar.gz", [_file("router.json", b"{}"), member])
    target = tmp_path / "imported"
    _refused(_import(archive, target), target, capsys, "unsafe entry")
    assert os.path.exists("/etc/passwd")  # untouched
