"""Router archives for ``routerforge router export|import``: one .tar.gz, validated and extracted safely.

An archive comes from someone else, so it is data only: regular files and directories (no links, devices or
absolute / ``..`` paths), every member resolved inside the target, at most ``max_files`` entries and
``max_bytes`` uncompressed bytes (checked from the headers while reading, before anything is written, so a
compression bomb is refused without being inflated), files 0600 and directories 0700 once extracted, the
router validated, and its embedder checked against the operator's own settings
(:func:`routerforge.embed.trust.check_archive_embedder`) before the directory appears.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from routerforge.errors import ArtifactError

if TYPE_CHECKING:
    import tarfile

    from routerforge.config import EmbedSettings

DEFAULT_MAX_MIB = 1024  # 1 GiB uncompressed
DEFAULT_MAX_FILES = 10_000


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


def safe_members(
    tar: tarfile.TarFile, archive: Path, target: Path, *, max_bytes: int, max_files: int
) -> list[tarfile.TarInfo]:
    """The members of ``tar`` after checking each header as it is read (see the module docstring)."""
    root = target.resolve()
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in tar:  # streaming: stop before inflating the data of a member over the cap
        name = Path(member.name)
        resolved = (root / name).resolve()
        if (
            name.is_absolute()
            or ".." in name.parts
            or not (member.isfile() or member.isdir())  # no symlinks, hard links, devices, fifos
            or (resolved != root and root not in resolved.parents)
        ):
            raise ArtifactError(f"Archive {archive} has an unsafe entry {member.name!r}; refusing it.")
        members.append(member)
        total += member.size
        if len(members) > max_files:
            raise ArtifactError(
                f"Archive {archive} holds more than {max_files} entries; refusing it.",
                hint="A router has a few dozen files. If you trust it, raise --max-files.",
            )
        if total > max_bytes:
            raise ArtifactError(
                f"Archive {archive} unpacks to more than {max_bytes} bytes; refusing it.",
                hint="If you trust it, raise --max-mib.",
            )
    return members


def extract_archive(
    archive: Path,
    router_dir: Path,
    operator_embed: EmbedSettings,
    *,
    max_bytes: int = DEFAULT_MAX_MIB << 20,
    max_files: int = DEFAULT_MAX_FILES,
) -> None:
    """Extract safely, validate the router and its embedder (against ``operator_embed``), then rename."""
    import shutil
    import tarfile
    import tempfile

    from routerforge.files import make_private_tree

    if not archive.is_file():
        raise ArtifactError(f"Archive {archive} does not exist.")
    if router_dir.exists() and any(router_dir.iterdir()):
        raise ArtifactError(f"{router_dir} already exists and is not empty.", hint="Choose a new directory.")
    router_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=router_dir.parent))  # 0700
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = safe_members(tar, archive, staging, max_bytes=max_bytes, max_files=max_files)
                tar.extractall(staging, members=members, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArtifactError(f"{archive} is not a readable router archive: {exc}") from exc
        make_private_tree(staging)
        validate_router_dir(staging, operator_embed)
        if router_dir.exists():
            router_dir.rmdir()
        staging.replace(router_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def validate_router_dir(directory: Path, operator_embed: EmbedSettings) -> None:
    """Load the router (router.json, version, arrays, shard) and check its saved embedder, if any."""
    from routerforge.config import EmbedSettings
    from routerforge.embed.trust import check_archive_embedder
    from routerforge.policy.trained import EMBEDDER_JSON
    from routerforge.routers.registry import load_router

    router = load_router(directory)
    close = getattr(router, "close", None)
    if callable(close):
        close()
    path = directory / EMBEDDER_JSON
    if not path.exists():
        return  # a bare router: it can only be used with an embedder the caller passes in
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        saved = doc.get("settings") if isinstance(doc, dict) else None
        if saved is None:
            return
        settings = EmbedSettings.model_validate(saved)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise ArtifactError(f"{path} holds invalid embedding settings: {exc}") from exc
    check_archive_embedder(settings, operator_embed)
