"""llm-policy: the 9-cell oracle table, the answer parser, the router contract with a stand-in model, one
real llama.cpp decision, and the SFT path (with torch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from routerforge.embed.hashing import HashEmbedder
from routerforge.errors import ConfigError, NotFittedError
from routerforge.judges.oracle import ORACLE_MATRIX, oracle_label, outcome_from_tags
from routerforge.routers.base import PromptBatch
from routerforge.routers.llm_policy import LlmPolicyRouter
from routerforge.routers.llm_policy_text import DEFAULT_POLICIES, messages_for, parse_decision
from routerforge.routers.registry import create_router, load_router

POLICIES = list(DEFAULT_POLICIES)
S, C, A = "Standard_Query", "Complex_Query", "Ambiguous_Query"
MODELS = ["small", "medium", "large"]


# -- the 9-cell table ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("medium", "large", "label"),
    [
        ("correct", "correct", S),
        ("correct", "incorrect", S),
        ("correct", "dont_know", A),
        ("incorrect", "correct", C),
        ("incorrect", "incorrect", A),
        ("incorrect", "dont_know", C),  # issue 13 names this cell: Complex, not Ambiguous
        ("dont_know", "correct", C),
        ("dont_know", "incorrect", A),
        ("dont_know", "dont_know", A),
    ],
)
def test_the_oracle_table_follows_the_scheme(medium: str, large: str, label: str) -> None:
    assert oracle_label(medium, large) == label  # type: ignore[arg-type]


def test_the_oracle_table_has_exactly_nine_cells_and_verdict_tags_win_over_scores() -> None:
    assert len(ORACLE_MATRIX) == 9
    assert outcome_from_tags(["verdict:dont_know"], 0.0) == "dont_know"
    assert outcome_from_tags(["judge_attempts:2"], 0.8) == "correct"
    assert outcome_from_tags(None, 0.2) == "incorrect"
    assert outcome_from_tags(["verdict:judge_failure"], 0.7) == "correct"


# -- the parser ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "policy", "how"),
    [
        ("[REASONING] easy. [DECISION] Standard_Query", S, "tagged"),
        ("[reasoning] hard [decision] complex_query", C, "tagged"),
        ("Decision: Ambiguous", A, "tagged"),
        ("**Decision**: complex query, because it is long", C, "tagged"),
        ("[REASONING] not a Complex_Query at all. [DECISION] Standard_Query", S, "tagged"),
        ("[DECISION] Standard_Query. This decision is final, Complex_Query never.", S, "tagged"),
        ("[REASONING] a [DECISION] Complex [DECISION] Ambiguous_Query", A, "tagged"),
        ("Standard_Query", S, "untagged"),
        ("I think this is an ambiguous-query.", A, "untagged"),
        ("[DECISION] Premium_Query", C, "unknown_policy"),
        ("[REASONING] it could be Standard or Complex", C, "no_decision"),
        ("The answer is 42.", C, "no_decision"),
        ("", C, "empty"),
        ("   \n", C, "empty"),
    ],
)
def test_the_parser_reads_any_answer(text: str, policy: str, how: str) -> None:
    parsed = parse_decision(text, POLICIES, fallback=C)
    assert (parsed.policy, parsed.how) == (policy, how)
    assert parsed.fallback == (how in ("empty", "no_decision", "unknown_policy"))


def test_the_parser_keeps_the_reasoning_and_refuses_an_unknown_fallback() -> None:
    parsed = parse_decision("[REASONING] needs proofs. [DECISION] Complex_Query", POLICIES, fallback=S)
    assert parsed.reasoning == "needs proofs."
    with pytest.raises(ValueError, match="fallback"):
        parse_decision("x", POLICIES, fallback="Nope")


def test_the_prompt_lists_every_policy_and_cuts_long_queries() -> None:
    messages = messages_for("q" * 10_000, DEFAULT_POLICIES)
    assert all(name in messages[0]["content"] for name in POLICIES)
    assert len(messages[1]["content"]) < 700


# -- the router with a stand-in model ---------------------------------------------------------------
def _batch(texts: list[str]) -> PromptBatch:
    return PromptBatch(texts=texts, dense=HashEmbedder(dim=16).embed(texts))


def _data() -> tuple[PromptBatch, np.ndarray]:
    texts = [f"{kind} question {i}" for i in range(12) for kind in ("easy", "hard", "vague")]
    scores = np.array(
        [{"easy": [0, 1, 1], "hard": [0, 0, 1], "vague": [0, 0, 0]}[t.split()[0]] for t in texts], dtype=float
    )
    return _batch(texts), scores


class Stub:
    """Answers by keyword, counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, messages: list[dict[str, str]]) -> str:
        self.calls += 1
        query = messages[-1]["content"]
        if "easy" in query:
            return "[REASONING] routine, not a Complex_Query. [DECISION] Standard_Query"
        if "hard" in query:
            return "reasoning: needs a proof\nDECISION: complex"
        return "I am not sure what to say."  # unparsable: the fallback


def test_prompted_router_maps_policies_to_models_through_the_contract(tmp_path: Path) -> None:
    X, scores = _data()
    stub = Stub()
    router = create_router("llm-policy", cache_dir=str(tmp_path / "cache"), fallback_policy=A)
    with pytest.raises(NotFittedError):
        router.predict_scores(X)
    assert isinstance(router, LlmPolicyRouter)
    router.fit(X, scores, MODELS).use_generator(stub)
    assert (router.medium_, router.large_) == ("medium", "large")
    assert router.label_counts_ == {A: 12, C: 12, S: 12}
    Q = _batch(["easy one", "hard one", "vague one"])
    pred = router.predict_scores(Q)
    np.testing.assert_array_equal(pred, [[0, 1, 0], [0, 0, 1], [0, 0, 1]])
    assert router.fallbacks_ == {"no_decision": 1}
    explanation = router.explain(Q)
    assert explanation.details["policy"] == S and "routine" in explanation.details["reasoning"]
    assert stub.calls == 3  # explain() answered from the cache
    out = router.save(tmp_path / "r")
    loaded = load_router(out)
    assert isinstance(loaded, LlmPolicyRouter)
    np.testing.assert_array_equal(loaded.predict_scores(Q), pred)  # the answers come from the cache dir
    assert json.loads((out / "router.json").read_text())["state"]["policy_models"][S] == "medium"


def test_policies_come_from_a_yaml_file_and_map_to_any_model(tmp_path: Path) -> None:
    X, scores = _data()
    path = tmp_path / "policies.yaml"
    path.write_text("Cheap: a short question.\nExpensive: anything else.\n", encoding="utf-8")
    router = create_router(
        "llm-policy", policies=str(path), policy_models={"Cheap": "small", "Expensive": "large"}
    ).fit(X, scores, MODELS)
    router.use_generator(lambda m: "[DECISION] cheap" if "easy" in m[-1]["content"] else "Expensive!")
    np.testing.assert_array_equal(router.predict_scores(_batch(["easy", "other"])), [[1, 0, 0], [0, 0, 1]])
    assert router.fallback_ == "Expensive"  # no Complex_Query: the last policy


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"policy_models": {S: "huge", C: "large", A: "large"}}, "unknown models"),
        ({"policy_models": {S: "small"}}, "unmapped policies"),
        ({"stage": "rlhf"}, "unknown stage"),
        ({"fallback_policy": "Nope"}, "fallback_policy"),
        ({"medium": "xl"}, "medium model"),
        ({"medium": "large", "large": "large"}, "must differ"),
        ({"policies": {}}, "policies"),
    ],
)
def test_bad_configuration_is_a_clear_error(params: dict[str, object], match: str) -> None:
    X, scores = _data()
    with pytest.raises(ConfigError, match=match):
        create_router("llm-policy", **params).fit(X, scores, MODELS)


def test_dont_know_verdicts_change_the_labels() -> None:
    X, scores = _data()
    dont_know = np.zeros_like(scores, dtype=bool)
    # the large model declines the easy and the hard ones: (medium correct, large unsure) → Ambiguous;
    # (medium incorrect, large unsure) → Complex, the cell issue 13 names explicitly
    dont_know[:, 2] = [not t.startswith("vague") for t in X.texts]
    router = LlmPolicyRouter().fit_with_verdicts(X, scores, MODELS, dont_know)
    assert router.label_counts_ == {A: 24, C: 12}
    without = LlmPolicyRouter().fit(X, scores, MODELS)
    assert without.label_counts_ == {S: 12, C: 12, A: 12}


# -- the real model --------------------------------------------------------------------------------
@pytest.mark.llama
def test_one_real_llamacpp_decision(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    X, scores = _data()
    router = create_router("llm-policy", max_tokens=32).fit(X, scores, MODELS)
    pred = router.predict_scores(_batch(["What is the capital of France?"]))
    assert pred.shape == (1, 3) and pred.sum() == 1.0  # exactly one mapped model, parsed or fallback
    raw, cached = router.answer("What is the capital of France?")
    assert cached and isinstance(raw, str)
    assert sum(router.fallbacks_.values()) <= 1


@pytest.mark.llama
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers 5 deprecations raised inside peft
def test_sft_trains_a_gguf_that_llamacpp_serves(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    pytest.importorskip("llama_cpp")
    X, scores = _data()
    router = create_router("llm-policy", stage="sft", train_examples=6, max_tokens=24)
    router.fit(X, scores, MODELS)
    out = router.save(tmp_path / "sft")
    assert (out / "policy.gguf").stat().st_size > 50_000_000
    loaded = load_router(out)
    assert isinstance(loaded, LlmPolicyRouter) and loaded.gguf_path_ is not None
    pred = loaded.predict_scores(_batch(["easy question 99"]))
    assert pred.sum() == 1.0
    raw, _ = loaded.answer("easy question 99")
    assert "[DECISION]" in raw  # six SFT steps already teach the answer format


# -- the CLI ---------------------------------------------------------------------------------------
@pytest.fixture
def cli_home(rf_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from routerforge.config import load_settings
    from routerforge.data.records import EvalRecord
    from routerforge.data.store import Store

    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    monkeypatch.setattr(LlmPolicyRouter, "_llama_generator", lambda self: Stub())
    records = []
    for i in range(40):
        kind = ("easy", "hard", "vague", "easy")[i % 4]
        row = {"easy": [0, 1, 1], "hard": [0, 0, 1], "vague": [0, 0, 0]}[kind]
        for model, score, price in zip(MODELS, row, (0.0001, 0.001, 0.01), strict=True):
            records.append(
                EvalRecord(
                    prompt_key=f"q{i}",
                    prompt=f"{kind} question {i}",
                    model=model,
                    score=float(score),
                    cost_usd=price,
                    split="test" if i % 5 == 0 else "train",
                )
            )
    store = Store.from_settings(load_settings())
    store.import_records("toy", records)
    store.close()
    return rf_home


def test_cli_trains_routes_and_benches_llm_policy(
    cli_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from routerforge.cli.main import main

    rdir = tmp_path / "r"
    args = ["train", "llm-policy", "--data", "toy", "--out", str(rdir), "--stage", "prompted", "--json"]
    assert main(args) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["router"] == "llm-policy"
    assert main(["route", str(rdir), "hard question 99", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["llm_policy"] == C and doc["reasoning"] == "needs a proof" and doc["model"] == "large"
    assert main(["route", str(rdir), "vague question 98", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["llm_policy"] == C  # unparsable: the fallback
    out = tmp_path / "bench.json"
    bench = ["bench", "--data", "toy", "-r", "llm-policy", "--split", "test", "--json", str(out)]
    assert main([*bench, "--latency-sample", "2", "--bootstrap", "0"]) == 0, capsys.readouterr().err
    assert "llm-policy" in json.loads(out.read_text())["routers"]
    assert main(["train", "knn", "--data", "toy", "--out", str(tmp_path / "k"), "--stage", "sft"]) == 2
    assert "stage" in capsys.readouterr().err
