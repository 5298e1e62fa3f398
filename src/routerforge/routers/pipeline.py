"""Routers end to end: raw texts in, predicted scores out (embedding included).

``train_router`` embeds the training prompts of a :class:`ScoreMatrix` (with a boilerplate stripper and
a BM25 encoder fitted on them), fits a router and saves, in one directory: the router artifact
(``router.json`` + arrays + shard), ``embedder.json`` (the embedding settings, without secrets),
``stripper.json`` and ``bm25.json``. :meth:`TrainedRouter.load` rebuilds all of it. The request path
(``predict`` / ``explain``) imports no torch: ONNX MiniLM + BM25 + the router.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from routerforge.config import EmbedSettings, Settings
from routerforge.errors import ArtifactError, ValidationError
from routerforge.routers.base import Explanation, PromptBatch, Router

if TYPE_CHECKING:
    from routerforge.data.matrix import ScoreMatrix
    from routerforge.embed.base import Embedder
    from routerforge.embed.sparse import Bm25Encoder
    from routerforge.embed.text import BoilerplateStripper

EMBEDDER_JSON = "embedder.json"
STRIPPER_JSON = "stripper.json"
BM25_JSON = "bm25.json"
PIPELINE_FORMAT_VERSION = 1


class TrainedRouter:
    """A fitted router plus everything needed to turn raw texts into its input."""

    def __init__(
        self,
        router: Router,
        embedder: Embedder,
        *,
        stripper: BoilerplateStripper | None = None,
        bm25: Bm25Encoder | None = None,
        directory: Path | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.router = router
        self.embedder = embedder
        self.stripper = stripper
        self.bm25 = bm25
        self.directory = directory
        self.info = info or {}

    @property
    def models(self) -> list[str]:
        return self.router.models

    @property
    def name(self) -> str:
        return self.router.name

    def batch(self, texts: Sequence[str]) -> PromptBatch:
        """Embed ``texts`` (dense, plus BM25 query vectors when the router uses them)."""
        from routerforge.embed.encode import encode

        if isinstance(texts, str):
            raise ValidationError("Pass a list of texts, not one string.")
        dense, sparse = encode(
            list(texts),
            self.embedder,
            sparse=self.router.uses_sparse(),
            stripper=self.stripper,
            bm25=self.bm25,
            sparse_kind="query",
        )
        return PromptBatch(texts=list(texts), dense=dense, sparse=sparse)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), n_models)`` predicted scores in [0, 1], columns in :attr:`models` order."""
        return self.router.predict_scores(self.batch(texts))

    def explain(self, text: str) -> Explanation:
        return self.router.explain(self.batch([text]))

    def save(self, directory: str | Path, embedder_settings: EmbedSettings | None) -> Path:
        """Write the router and the embedding state into ``directory``.

        ``embedder_settings`` (secrets excluded) let :meth:`load` rebuild the embedder; with ``None`` only
        the embedder id is recorded and ``load`` needs ``embedder=``.
        """
        out = Path(directory)
        self.router.save(out)
        doc = {
            "format_version": PIPELINE_FORMAT_VERSION,
            "settings": None
            if embedder_settings is None
            else embedder_settings.model_dump(mode="json", exclude={"api_key"}),
            "embedder_id": self.embedder.id,
            "dim": int(self.embedder.dim),
            **({"training": self.info} if self.info else {}),
        }
        (out / EMBEDDER_JSON).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if self.stripper is not None:
            (out / STRIPPER_JSON).write_text(json.dumps(self.stripper.to_dict()) + "\n", encoding="utf-8")
        if self.bm25 is not None:
            (out / BM25_JSON).write_text(json.dumps(self.bm25.to_dict()) + "\n", encoding="utf-8")
        self.directory = out
        return out

    @classmethod
    def load(
        cls,
        directory: str | Path,
        cache_dir: str | Path | Settings | None = None,
        *,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
    ) -> TrainedRouter:
        """Rebuild a trained router from ``directory``.

        ``cache_dir`` is the embedding cache directory (or pass ``settings``: its ``cache_dir`` is used,
        and its ``embed.api_key`` when the saved embedder is the same http endpoint). ``embedder``
        overrides the saved embedding settings (it must produce vectors of the same size).
        """
        from routerforge.embed.factory import build_embedder
        from routerforge.embed.sparse import Bm25Encoder
        from routerforge.embed.text import BoilerplateStripper
        from routerforge.routers.registry import load_router

        if isinstance(cache_dir, Settings):
            settings, cache_dir = cache_dir, None
        if settings is not None and cache_dir is None:
            cache_dir = settings.cache_dir
        path = Path(directory)
        doc = _read_json(path / EMBEDDER_JSON, what="embedding settings")
        if doc.get("format_version") != PIPELINE_FORMAT_VERSION:
            raise ArtifactError(
                f"{path / EMBEDDER_JSON} has format version {doc.get('format_version')!r}; this routerforge "
                f"reads version {PIPELINE_FORMAT_VERSION}.",
                hint="Retrain the router with this version of routerforge.",
            )
        router = load_router(path)
        if embedder is None:
            if doc.get("settings") is None:
                raise ArtifactError(
                    f"{path} was trained with embedder {doc.get('embedder_id')!r}, whose settings were not recorded.",
                    hint="Pass the same embedder: TrainedRouter.load(dir, embedder=...).",
                )
            try:
                embed_settings = EmbedSettings(**doc["settings"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ArtifactError(
                    f"{path / EMBEDDER_JSON} holds invalid embedding settings: {exc}"
                ) from exc
            if settings is not None and settings.embed.api_key is not None:
                same = (settings.embed.provider, settings.embed.url) == (
                    embed_settings.provider,
                    embed_settings.url,
                )
                if same:
                    embed_settings = embed_settings.model_copy(update={"api_key": settings.embed.api_key})
            embedder = build_embedder(embed_settings, cache_dir=cache_dir)
        dim = int(doc.get("dim", embedder.dim))
        if embedder.dim != dim or (router.dim_ and router.dim_ != dim):
            raise ArtifactError(
                f"{path} was trained on {dim}-dimensional vectors ({doc.get('embedder_id')}), "
                f"but the embedder gives {embedder.dim} ({embedder.id})."
            )
        stripper = None
        if (path / STRIPPER_JSON).is_file():
            stripper = BoilerplateStripper.from_dict(_read_json(path / STRIPPER_JSON, what="stripper state"))
        bm25 = None
        if (path / BM25_JSON).is_file():
            bm25 = Bm25Encoder.from_dict(_read_json(path / BM25_JSON, what="BM25 state"))
        return cls(router, embedder, stripper=stripper, bm25=bm25, directory=path, info=doc.get("training"))

    def close(self) -> None:
        closer = getattr(self.router, "close", None)
        if callable(closer):
            closer()
        closer = getattr(self.embedder, "close", None)
        if callable(closer):
            closer()


def train_router(
    name: str,
    matrix: ScoreMatrix,
    rows: Sequence[int] | np.ndarray | None,
    embedder_settings: EmbedSettings | Embedder,
    out_dir: str | Path,
    params: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    *,
    strip_boilerplate: bool = True,
    progress: bool = False,
    **extra_params: Any,
) -> TrainedRouter:
    """Embed ``matrix``'s rows ``rows`` (all when ``None``), fit router ``name`` and save it in ``out_dir``.

    ``embedder_settings`` is normally an :class:`EmbedSettings` (saved, minus secrets, in
    ``embedder.json``); an already built embedder is accepted too (then only its id is recorded and
    ``TrainedRouter.load`` needs ``embedder=``, except for the default hash embedder). Router parameters
    come from ``params`` and/or keyword arguments.
    """
    from routerforge.embed.encode import encode
    from routerforge.embed.factory import build_embedder
    from routerforge.embed.sparse import Bm25Encoder
    from routerforge.embed.text import BoilerplateStripper
    from routerforge.routers.registry import create_router

    settings: EmbedSettings | None
    if isinstance(embedder_settings, EmbedSettings):
        settings = embedder_settings
        embedder = build_embedder(settings, cache_dir=cache_dir)
    else:
        embedder = embedder_settings
        settings = _settings_for(embedder)
    router = create_router(name, **{**(params or {}), **extra_params})
    train = matrix if rows is None else matrix.take(rows)
    if train.n_prompts == 0:
        raise ValidationError(f"No training prompts selected from dataset {matrix.name!r}.")
    stripper = BoilerplateStripper().fit(train.prompts) if strip_boilerplate else None
    sparse = router.uses_sparse()
    if sparse:  # BM25's average document length is measured on the texts it will encode
        bm25 = Bm25Encoder().fit(
            stripper.apply_many(train.prompts) if stripper is not None else train.prompts
        )
    else:
        bm25 = None
    dense, vectors = encode(
        train.prompts, embedder, sparse=sparse, progress=progress, stripper=stripper, bm25=bm25
    )
    router.fit(
        PromptBatch(texts=list(train.prompts), dense=dense, sparse=vectors), train.scores, train.models
    )
    info = {"dataset": matrix.name, "n_prompts": train.n_prompts}
    trained = TrainedRouter(router, embedder, stripper=stripper, bm25=bm25, info=info)
    trained.save(out_dir, settings)
    return trained


def _settings_for(embedder: Embedder) -> EmbedSettings | None:
    """Settings that rebuild ``embedder``, when known (the default hash embedder); else ``None``."""
    from routerforge.embed.hashing import HashEmbedder

    if isinstance(embedder, HashEmbedder) and embedder.id == HashEmbedder().id:
        return EmbedSettings(provider="hash")
    return None


def _read_json(path: Path, *, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ArtifactError(
            f"{path.parent} lacks {path.name} ({what}).", hint="Train it with `routerforge train`."
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"Cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ArtifactError(f"{path} must hold a JSON object.")
    return doc
