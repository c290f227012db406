"""The causal-LM scenario's command-line options (run, sweep settings, params, estimate)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tpme.errors import TpmeError

DESTS = ("model", "dataset", "tokenizer", "text_field", "seq_len", "min_seq_len", "samples", "eval_samples", "weights_dtype", "optimizer",
         "weight_decay", "grad_clip", "gradient_checkpointing", "peft_config")


def add_arguments(p: argparse.ArgumentParser, data: bool = True) -> None:
    """`data=False`: the model options only (commands that never read a dataset)."""
    g = p.add_argument_group("causal-lm scenario")
    g.add_argument("--model", help="tiny, smollm2-135m, qwen2.5-0.5b, qwen2.5-1.5b, llama-3.2-1b, llama-3.2-3b, llama-3.1-8b, mistral-7b (random-init shapes), "
                   "a config.json, or a local model directory (its weights and tokenizer are used)")
    g.add_argument("--peft-config", action="append", metavar="FILE", help="a peft adapter_config.json to run as a method, named by its two enclosing folders (repeatable)")
    if not data:
        return
    g.add_argument("--dataset", help="synthetic, or a .jsonl / .txt file tokenised with a local tokenizer (default: the preset's)")
    g.add_argument("--tokenizer", metavar="DIR", help="a local tokenizer directory for a file dataset (default: the model directory's)")
    g.add_argument("--text-field", help="the JSONL field holding a sample's text (default: text)")
    g.add_argument("--seq-len", type=int, help="the longest sequence in tokens; synthetic sequences all have it unless --min-seq-len is given")
    g.add_argument("--min-seq-len", type=int, help="synthetic lengths uniform in [MIN, --seq-len]")
    g.add_argument("--samples", type=int, help="synthetic training sequences per epoch")
    g.add_argument("--eval-samples", type=int, help="held-out sequences per split (valid, test)")
    g.add_argument("--weights-dtype", choices=["fp32", "bf16"], help="fp32: weights in fp32, autocast at --precision; bf16: weights in bf16, no autocast (peft's suite; needs --precision bf16)")
    g.add_argument("--optimizer", choices=["adamw", "adam"], help="default adamw")
    g.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 0.1)")
    g.add_argument("--grad-clip", type=float, help="maximum gradient norm (default 1.0)")
    g.add_argument("--gradient-checkpointing", action="store_true", default=None, help="recompute activations in backward")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = ("model", "dataset", "tokenizer", "text_field", "seq_len", "min_seq_len", "samples", "eval_samples", "weights_dtype", "optimizer",
             "weight_decay", "grad_clip", "gradient_checkpointing")
    return {n: getattr(args, n, None) for n in names}


def peft_config_methods(args: argparse.Namespace) -> list[str]:
    """`--peft-config FILE` -> method names of the peft-config family, each file checked to exist."""
    out = []
    for raw in getattr(args, "peft_config", None) or []:
        path = Path(raw).expanduser()
        if not path.is_file():
            raise TpmeError(f"--peft-config {raw}: no such file", "give the path of a peft adapter_config.json")
        out.append(f"peft-config:{path.resolve()}")
    return out
