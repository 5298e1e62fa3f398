"""A trained router — predictor, embedding state and policy state — and its directory, one owner
(:class:`TrainedRouter`) for every file in it. It lives in the policy layer because what is saved is the
whole unit that is measured and served: the predictor (``routers``), how texts become its input
(``embed``) and how its predictions become a choice (prices, strong/weak, the calibrated knob).

A trained router directory holds:

| file | what | written by |
| --- | --- | --- |
| ``router.json`` + ``*.npy`` (+ index) | the quality predictor (type, params, models, arrays) | ``Router.save`` |
| ``embedder.json`` | the embedding settings (no secrets) and vector size | here |
| ``stripper.json``, ``bm25.json`` | label-free text preprocessing fitted on the training prompts | here |
| ``routing.json`` | the manifest: data, split, models, mean training scores (→ strong/weak), prices | here |
| ``training_prompts.npy`` | text hashes of the training prompts (held-out checks) | here |
| ``cost_model_*.npy`` | per-prompt price model learnt from recorded costs (when the data has costs) | here |
| ``calibration.json`` | the calibrated policy knob (``routerforge calibrate``) | :meth:`save_calibration` |

``train_router`` embeds the training prompts, fits the router and the price estimator, and saves it all
atomically (into a temporary sibling, then renamed). :meth:`TrainedRouter.load` validates and rebuilds all of
it; the CLI, the quickstart, the SDK and the gateway all go through it. Decisions are made by the router's
:class:`~routerforge.policy.engine.DecisionEngine` (:meth:`TrainedRouter.decide`). The request path imports
no torch: ONNX MiniLM + BM25 + the router.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from routerforge.config import EmbedSettings, IndexSettings, Settings
from routerforge.errors import ArtifactError, ValidationError
from routerforge.files import make_private_tree, private_dir
from routerforge.policy.decision import RoutingDecision
from routerforge.policy.describe import TaskDescriber
from routerforge.policy.engine import DecisionEngine
from routerforge.policy.pricing import PriceEstimator
from routerforge.routers.base import Explanation, PromptBatch, Router

if TYPE_CHECKING:
    from routerforge.data.matrix import ScoreMatrix
    from routerforge.data.records import CandidateModel
    from routerforge.embed.base import Embedder
    from routerforge.embed.sparse import Bm25Encoder
    from routerforge.embed.text import BoilerplateStripper

EMBEDDER_JSON = "embedder.json"
STRIPPER_JSON = "stripper.json"
BM25_JSON = "bm25.json"
ROUTING_JSON = "routing.json"
TRAINING_HASHES = "training_prompts.npy"
CALIBRATION_JSON = "calibration.json"
PIPELINE_FORMAT_VERSION = 1
MANIFEST_FORMAT_VERSION = 2


class TrainedRouter:
    """A fitted router plus everything needed to turn raw texts into its input and its input into a choice."""

    def __init__(
        self,
        router: Router,
        embedder: Embedder,
        *,
        stripper: BoilerplateStripper | None = None,
        bm25: Bm25Encoder | None = None,
        directory: Path | None = None,
        manifest: dict[str, Any] | None = None,
        prices: PriceEstimator | None = None,
        calibration: dict[str, Any] | None = None,
        training_hashes: np.ndarray | None = None,
        embed_settings: EmbedSettings | None = None,
        describer: TaskDescriber | None = None,
    ) -> None:
        self.router = router
        self.describer = describer
        self.embedder = embedder
        self.stripper = stripper
        self.bm25 = bm25
        self.directory = directory
        self.manifest = dict(manifest or {})
        self.embed_settings = embed_settings
        self.training_hashes = training_hashes
        models = list(router.models)
        self.engine = DecisionEngine(
            models,
            mean_scores=self.manifest.get("mean_scores") or {},
            prices=prices or PriceEstimator(models),
            calibration=calibration,
            latency_ms=self.manifest.get("mean_latency_ms") or {},
        )

    @property
    def models(self) -> list[str]:
        return self.router.models

    @property
    def name(self) -> str:
        return self.router.name

    @property
    def prices(self) -> PriceEstimator:
        return self.engine.prices

    @property
    def calibration(self) -> dict[str, Any]:
        return self.engine.calibration

    # -- texts -> predictions -> decisions ------------------------------------------------------------
    def batch(
        self, texts: Sequence[str], metadata: Sequence[Mapping[str, Any] | None] | None = None
    ) -> PromptBatch:
        """Embed ``texts`` (dense, plus BM25 query vectors when the router uses them). ``metadata``: one
        dict per text of what is known at routing time (``{"category": "law"}``; see ``routers.metadata``),
        validated and handed to the router."""
        from routerforge.embed.encode import encode

        if isinstance(texts, str):
            raise ValidationError("Pass a list of texts, not one string.")
        meta = _batch_metadata(metadata, len(texts))
        if self.describer is not None:  # the router reads task descriptions, not the prompts themselves
            texts = self.describer.describe(list(texts))
        dense, sparse = encode(
            list(texts),
            self.embedder,
            sparse=self.router.uses_sparse(),
            stripper=self.stripper,
            bm25=self.bm25,
            sparse_kind="query",
        )
        return PromptBatch(texts=list(texts), dense=dense, sparse=sparse, meta=meta)

    def predict(
        self, texts: Sequence[str], metadata: Sequence[Mapping[str, Any] | None] | None = None
    ) -> np.ndarray:
        """``(len(texts), n_models)`` predicted scores in [0, 1], columns in :attr:`models` order."""
        return self.router.predict_scores(self.batch(texts, metadata))

    def score(
        self, texts: Sequence[str], metadata: Sequence[Mapping[str, Any] | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted scores and decision prices of ``texts`` from one embedding pass: two ``(n, m)`` arrays."""
        batch = self.batch(texts, metadata)
        return self.router.predict_scores(batch), self.prices.estimate(batch.texts, batch.dense)

    def explain(self, text: str, metadata: Mapping[str, Any] | None = None) -> Explanation:
        return self.router.explain(self.batch([text], None if metadata is None else [metadata]))

    def decide(
        self, prompt: str, *, metadata: Mapping[str, Any] | None = None, **policy: Any
    ) -> RoutingDecision:
        """The decision for one prompt (keyword arguments: see :meth:`DecisionEngine.decide`; rules see the
        prompt's text; ``metadata`` is what is known about the prompt at routing time)."""
        predicted, prices = self.score([prompt], None if metadata is None else [metadata])
        return self.engine.decide(predicted[0], prices[0], **{"text": prompt, **policy})

    # -- the directory --------------------------------------------------------------------------------
    def seen(self) -> set[str]:
        """Text hashes of the training prompts (refuses a directory that does not record them)."""
        if self.training_hashes is None:
            raise ArtifactError(
                f"{self.directory} does not record its training prompts ({TRAINING_HASHES}), so held-out "
                "prompts cannot be told apart.",
                hint="Train it with `routerforge train` (or policy.trained.train_router).",
            )
        return {str(h) for h in self.training_hashes.tolist()}

    def save(self, directory: str | Path, embedder_settings: EmbedSettings | None = None) -> Path:
        """Write every file of the router directory (see the module docstring) into ``directory``.

        ``embedder_settings`` (secrets excluded) let :meth:`load` rebuild the embedder; with ``None`` the
        settings given at load or train time are used, else only the embedder id is recorded and ``load``
        needs ``embedder=``.
        """
        out = private_dir(Path(directory))
        settings = embedder_settings or self.embed_settings
        self.router.save(out)
        doc = {
            "format_version": PIPELINE_FORMAT_VERSION,
            "settings": None if settings is None else settings.model_dump(mode="json", exclude={"api_key"}),
            "embedder_id": self.embedder.id,
            "dim": int(self.embedder.dim),
        }
        _write_json(out / EMBEDDER_JSON, doc)
        if self.stripper is not None:
            _write_json(out / STRIPPER_JSON, self.stripper.to_dict())
        if self.bm25 is not None:
            _write_json(out / BM25_JSON, self.bm25.to_dict())
        manifest = {
            **self.manifest,
            "format_version": MANIFEST_FORMAT_VERSION,
            "models": self.models,
            "mean_scores": self.engine.mean_scores,
            "mean_latency_ms": self.engine.latency_ms,
            "prices": self.prices.to_dict(),
            "describer": None if self.describer is None else self.describer.to_dict(),
            "router": self.router.name,
        }
        _write_json(out / ROUTING_JSON, manifest)
        self.prices.save(out)
        if self.describer is not None:
            self.describer.save(out)
        if self.training_hashes is not None:
            np.save(out / TRAINING_HASHES, np.asarray(self.training_hashes, dtype="U32"), allow_pickle=False)
        if self.calibration:
            _write_json(out / CALIBRATION_JSON, self.calibration)
        self.directory = out
        self.manifest = manifest
        return out

    def save_calibration(self, calibration: Mapping[str, Any]) -> Path:
        """Record ``calibration`` (the knob and what to expect) in the directory; decisions use it from now."""
        if self.directory is None:
            raise ArtifactError("This router has no directory yet; save it first.")
        doc = json.loads(json.dumps(dict(calibration), default=_json_default))
        self.engine.calibration = doc
        path = self.directory / CALIBRATION_JSON
        _write_json(path, doc)
        return path

    @classmethod
    def load(
        cls,
        directory: str | Path,
        cache_dir: str | Path | Settings | None = None,
        *,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        embed_overrides: Mapping[str, Any] | None = None,
    ) -> TrainedRouter:
        """Rebuild a trained router from ``directory``, validating every file.

        ``cache_dir`` is the embedding cache directory (or pass ``settings``: its ``cache_dir``, its index
        settings and its ``embed.api_key`` — when the saved embedder is the same http endpoint — are used).
        ``embedder`` overrides the saved embedding settings (it must produce vectors of the same size);
        ``embed_overrides`` changes run-time fields of them (the gateway's ``threads``, ``cache``).
        """
        from routerforge.embed.factory import build_embedder
        from routerforge.embed.sparse import Bm25Encoder
        from routerforge.embed.text import BoilerplateStripper
        from routerforge.embed.trust import check_archive_embedder
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
        manifest = _read_manifest(path)
        router = load_router(path)
        router.configure_index(
            settings.index if settings is not None else None,
            name=manifest.get("index_name", collection_name(path)),
        )
        if list(manifest.get("models", router.models)) != list(router.models):
            raise ArtifactError(
                f"{path / ROUTING_JSON} lists models {manifest.get('models')}, but router.json has {router.models}.",
                hint="The directory was edited by hand or mixed from two routers; retrain it.",
            )
        embed_settings: EmbedSettings | None = None
        if doc.get("settings") is not None:
            try:
                embed_settings = EmbedSettings(**doc["settings"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ArtifactError(
                    f"{path / EMBEDDER_JSON} holds invalid embedding settings: {exc}"
                ) from exc
        if embedder is None:
            if embed_settings is None:
                raise ArtifactError(
                    f"{path} was trained with embedder {doc.get('embedder_id')!r}, whose settings were not recorded.",
                    hint="Pass the same embedder: TrainedRouter.load(dir, embedder=...).",
                )
            # the directory may come from someone else: its embedder never chooses where prompts go
            use = check_archive_embedder(embed_settings, settings.embed if settings else EmbedSettings())
            if embed_overrides:
                use = use.model_copy(update=dict(embed_overrides))
            embedder = build_embedder(use, cache_dir=cache_dir)
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
        try:
            prices = PriceEstimator.from_dict(manifest.get("prices") or {"models": router.models}, path)
        except (TypeError, ValueError, IndexError, OSError) as exc:
            raise ArtifactError(f"{path / ROUTING_JSON} holds invalid prices: {exc}") from exc
        if prices.models != list(router.models):
            raise ArtifactError(
                f"{path / ROUTING_JSON}: prices are for {prices.models}, not {router.models}."
            )
        calibration = None
        if (path / CALIBRATION_JSON).is_file():
            calibration = _read_json(path / CALIBRATION_JSON, what="calibration")
        hashes = None
        if (path / TRAINING_HASHES).is_file():
            try:
                hashes = np.load(path / TRAINING_HASHES, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ArtifactError(f"Cannot read {path / TRAINING_HASHES}: {exc}") from exc
        return cls(
            router,
            embedder,
            stripper=stripper,
            bm25=bm25,
            directory=path,
            manifest=manifest,
            prices=prices,
            calibration=calibration,
            training_hashes=hashes,
            embed_settings=embed_settings,
            describer=None
            if not manifest.get("describer")
            else TaskDescriber.load(manifest["describer"], path),
        )

    def close(self) -> None:
        closer = getattr(self.router, "close", None)
        if callable(closer):
            closer()
        closer = getattr(self.embedder, "close", None)
        if callable(closer):
            closer()


def is_router_dir(directory: Path) -> bool:
    """True when ``directory`` holds a saved router (its ``router.json``)."""
    return (directory / "router.json").is_file()


def router_dirs(routers_dir: Path) -> dict[str, Path]:
    """Router directories under ``routers_dir`` by key: ``name`` (shared) and ``tenants/<tenant>/<name>``
    (a tenant's own), sorted; the one listing the gateway and the dashboard use."""
    found: dict[str, Path] = {}
    if not routers_dir.is_dir():
        return found
    for d in sorted(routers_dir.iterdir()):
        if d.is_dir() and is_router_dir(d):
            found[d.name] = d
    tenants = routers_dir / "tenants"
    if tenants.is_dir():
        for t in sorted(tenants.iterdir()):
            if t.is_dir():
                for d in sorted(t.iterdir()):
                    if d.is_dir() and is_router_dir(d):
                        found[f"tenants/{t.name}/{d.name}"] = d
    return found


def collection_name(directory: Path) -> str:
    """A Qdrant collection name for a router directory: its name plus a short hash of its absolute path."""
    resolved = str(Path(directory).resolve())
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(directory).name)[:40] or "router"
    return f"rf-{stem}-{hashlib.sha256(resolved.encode()).hexdigest()[:8]}"


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
    catalog: Mapping[str, CandidateModel] | None = None,
    index: IndexSettings | None = None,
    split: str | None = None,
    describe: str | None = None,
    **extra_params: Any,
) -> TrainedRouter:
    """Embed ``matrix``'s rows ``rows`` (all when ``None``), fit router ``name`` and the price estimator,
    and save the whole router directory in ``out_dir`` (atomically: nothing is left half-written).

    ``embedder_settings`` is normally an :class:`EmbedSettings` (saved, minus secrets, in
    ``embedder.json``); an already built embedder is accepted too (then only its id is recorded and
    ``TrainedRouter.load`` needs ``embedder=``, except for the default hash embedder). Router parameters
    come from ``params`` and/or keyword arguments. ``catalog`` holds registered model prices (used where the
    data has no recorded costs); ``index`` says where a router with a vector index keeps it; ``describe``
    names an installed local model that rewrites every prompt as a task description before embedding
    (:mod:`routerforge.policy.describe`).
    """
    from routerforge.embed.encode import encode
    from routerforge.embed.factory import build_embedder
    from routerforge.embed.sparse import Bm25Encoder
    from routerforge.embed.text import BoilerplateStripper
    from routerforge.routers.metadata import batch_meta
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
    out = Path(out_dir)
    index_name = collection_name(out)
    router.configure_index(index, name=index_name)
    describer = None
    texts = list(train.prompts)
    if describe is not None:
        TaskDescriber.check_model(describe)
        describer = TaskDescriber(describe)
        texts = describer.describe(texts)
    stripper = BoilerplateStripper().fit(texts) if strip_boilerplate else None
    sparse = router.uses_sparse()
    bm25 = None
    if sparse:  # BM25's average document length is measured on the texts it will encode
        bm25 = Bm25Encoder().fit(stripper.apply_many(texts) if stripper is not None else texts)
    dense, vectors = encode(texts, embedder, sparse=sparse, progress=progress, stripper=stripper, bm25=bm25)
    router.set_model_outcomes(train.costs, train.latencies)
    if extra := router.auxiliary_texts():  # e.g. a semantic router's utterances, embedded like the prompts
        router.set_auxiliary_vectors(encode(extra, embedder, sparse=False, stripper=stripper)[0])
    meta = batch_meta(train.categories, train.metadata)
    router.fit(PromptBatch(texts=texts, dense=dense, sparse=vectors, meta=meta), train.scores, train.models)
    from routerforge.data.records import text_hash

    with np.errstate(all="ignore"):
        means = np.nanmean(train.scores, axis=0)
    manifest = {
        "dataset": matrix.name,
        "split": split,
        "n_train": int(train.n_prompts),
        "mean_scores": {m: float(v) for m, v in zip(train.models, means, strict=True) if np.isfinite(v)},
        "mean_latency_ms": train.mean_latency_ms(),
        "params": router.get_params(),
        "metadata_keys": sorted({k for m in meta or [] for k in m}),
        "index_name": index_name,
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    trained = TrainedRouter(
        router,
        embedder,
        stripper=stripper,
        bm25=bm25,
        manifest=manifest,
        prices=PriceEstimator.fit(train.models, dense, train.costs, catalog),
        training_hashes=np.array([text_hash(p) for p in train.prompts], dtype="U32"),
        embed_settings=settings,
        describer=describer,
    )
    with _replacing_dir(out) as tmp:
        trained.save(tmp, settings)
    trained.directory = out
    return trained


class _replacing_dir:
    """Write a directory into a temporary sibling and move it into place at the end (or remove it on error)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        if self.target.exists() and not self.target.is_dir():
            raise ValidationError(f"{self.target} is a file; pass a directory for the router.")
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", dir=self.target.parent))
        return self.tmp

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = None
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            self.target.rename(old)
        self.tmp.rename(self.target)
        make_private_tree(self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _batch_metadata(
    metadata: Sequence[Mapping[str, Any] | None] | None, n: int
) -> list[dict[str, str]] | None:
    """Validated per-prompt metadata for a batch of ``n`` texts (``None`` when nothing is given)."""
    from routerforge.routers.metadata import clean_metadata

    if metadata is None:
        return None
    if isinstance(metadata, Mapping) or len(metadata) != n:
        raise ValidationError(f"Pass one metadata dict (or None) per text: {n} texts.")
    out = [clean_metadata(m) for m in metadata]
    return out if any(out) else None


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


def _read_manifest(path: Path) -> dict[str, Any]:
    if not (path / ROUTING_JSON).is_file():
        raise ArtifactError(
            f"{path} lacks {ROUTING_JSON} (the router's manifest: models, mean scores, prices).",
            hint="It was trained by an older routerforge or copied incompletely; retrain it with `routerforge train`.",
        )
    doc = _read_json(path / ROUTING_JSON, what="routing manifest")
    if doc.get("format_version") != MANIFEST_FORMAT_VERSION:
        raise ArtifactError(
            f"{path / ROUTING_JSON} has format version {doc.get('format_version')!r}; this routerforge reads "
            f"version {MANIFEST_FORMAT_VERSION}.",
            hint="Retrain the router with this version of routerforge.",
        )
    scores = doc.get("mean_scores")
    if not isinstance(scores, dict) or not all(isinstance(v, int | float) for v in scores.values()):
        raise ArtifactError(f"{path / ROUTING_JSON}: 'mean_scores' must map model names to numbers.")
    return doc


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _write_json(path: Path, doc: Any) -> None:
    """Write JSON atomically (temporary file in the same directory, then rename), readable by the owner only."""
    text = json.dumps(doc, indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    tmp.replace(path)
