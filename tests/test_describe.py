"""Task descriptions before embedding (`train cluster --describe MODEL`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from routerforge.data.matrix import ScoreMatrix
from routerforge.embed.hashing import HashEmbedder
from routerforge.errors import ArtifactError, ConfigError
from routerforge.policy.describe import DESCRIPTIONS_JSON, TaskDescriber
from routerforge.policy.trained import TrainedRouter


def _matrix() -> ScoreMatrix:
    prompts = [f"What is {i} times {i + 3}?" for i in range(12)] + [
        f"Write a poem about tree {i}." for i in range(12)
    ]
    scores = np.array([[1.0, 0.0]] * 12 + [[0.0, 1.0]] * 12)
    return ScoreMatrix(
        "tasks", [str(i) for i in range(24)], prompts, ["mathy", "poet"], scores, np.full((24, 2), np.nan)
    )


def test_describer_caches_and_round_trips(tmp_path: Path) -> None:
    calls: list[str] = []

    def generate(messages: list[dict[str, str]]) -> str:
        calls.append(messages[-1]["content"])
        return "multiply two numbers\nextra line" if "times" in messages[-1]["content"] else ""

    d = TaskDescriber("stand-in", generate=generate)
    assert d.describe(["What is 2 times 3?", "Hi", "What is 2 times 3?"]) == [
        "multiply two numbers",
        "Hi",
        "multiply two numbers",
    ]
    assert len(calls) == 2  # cached by prompt hash; an empty answer keeps the prompt
    assert d.to_dict() == {"model": "stand-in", "max_tokens": 16}
    d.save(tmp_path)
    again = TaskDescriber.load(d.to_dict(), tmp_path)
    assert again.cache == d.cache
    (tmp_path / DESCRIPTIONS_JSON).write_text(json.dumps({"k": 3}))
    with pytest.raises(ArtifactError, match="descriptions"):
        TaskDescriber.load(d.to_dict(), tmp_path)
    with pytest.raises(ConfigError, match="installed local model"):
        TaskDescriber.check_model("not-a-local-model")


@pytest.mark.llama
def test_cluster_on_task_descriptions_with_a_real_local_model(tmp_path: Path) -> None:
    from routerforge.backends.llamacpp import installed_local_models
    from routerforge.policy.trained import train_router

    local = [s.id for s in installed_local_models()]
    if "smollm2-135m" not in local:
        pytest.skip("the SmolLM2 package (routerforge[local]) is not installed")
    trained = train_router(
        "cluster", _matrix(), None, HashEmbedder(), tmp_path / "r", {"n_clusters": 2}, describe="smollm2-135m"
    )
    descriptions = json.loads((tmp_path / "r" / DESCRIPTIONS_JSON).read_text())
    assert len(descriptions) == 24 and all(isinstance(v, str) and v for v in descriptions.values())
    loaded = TrainedRouter.load(tmp_path / "r")
    assert loaded.describer is not None and loaded.describer.cache == descriptions
    np.testing.assert_allclose(
        loaded.predict([_matrix().prompts[0]]), trained.predict([_matrix().prompts[0]])
    )
