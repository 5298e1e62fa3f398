"""Router archives for ``routerforge router export|import``: one .tar.gz, validated and extracted safely."""

from __future__ import annotations

from pathlib import Path

from routerforge.errors import ArtifactError


def write_archive(router_dir: Path, archive: Path) -> None:
    """Write every regular file under ``router_dir`` into a gzip tar (paths relative, no links)."""
    import tarfile

    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(archive.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(router_dir.rglob("*")):
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue
            tar.add(path, arcname=path.relative_to(router_dir).as_posix(), recursive=False)
    tmp.replace(archive)


def extract_archive(archive: Path, router_dir: Path) -> None:
    """Extract safely (regular files and dirs only, no absolute paths or '..'), validate, then rename."""
    import shutil
    import tarfile
    import tempfile

    from routerforge.routers.registry import load_router

    if not archive.is_file():
        raise ArtifactError(f"Archive {archive} does not exist.")
    if router_dir.exists() and any(router_dir.iterdir()):
        raise ArtifactError(f"{router_dir} already exists and is not empty.", hint="Choose a new directory.")
    router_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=router_dir.parent))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    name = Path(member.name)
                    if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
                        raise ArtifactError(
                            f"Archive {archive} has an unsafe entry {member.name!r}; refusing it."
                        )
                tar.extractall(staging, members=members, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArtifactError(f"{archive} is not a readable router archive: {exc}") from exc
        load_router(staging)  # validates router.json, the version and the arrays
        if router_dir.exists():
            router_dir.rmdir()
        staging.replace(router_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
