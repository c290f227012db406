"""Parameter counts as peft counts them, and peft's experiment folders as its suite reads them.

The parametrised test holds every published run of the shared folder against `count`; the unit
tests pin each special case on a tiny Llama, where a real-weight count is the reference.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from tpme.errors import TpmeError
from tpme.scenarios.causal_lm.counting import count
from tpme.scenarios.causal_lm.peft_experiment import label_for_config, load_experiment

COMPARISON = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "peft-method-comparison"
RUNS = sorted((COMPARISON / "results").glob("*.json")) if COMPARISON.is_dir() else []


@pytest.fixture(scope="module")
def llama_3b():
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(COMPARISON / "llama-3.2-3b")


@pytest.mark.parametrize("run", RUNS, ids=[r.stem for r in RUNS])
def test_count_equals_the_published_run(run, llama_3b):
    published = json.loads(run.read_text())
    experiment = load_experiment(COMPARISON / "experiments" / published["run_info"]["experiment_name"])
    assert experiment.label == published["run_info"]["experiment_name"]
    trainable, total = count(llama_3b, experiment.adapter_config, experiment.training)
    assert (trainable, total) == (published["train_info"]["num_trainable_params"], published["train_info"]["num_total_params"])


def test_every_experiment_has_a_published_run():
    if not COMPARISON.is_dir():
        pytest.skip("../shared/data/peft-method-comparison is not present")
    folders = {f"{p.parent.name}/{p.name}" for p in (COMPARISON / "experiments").glob("*/*") if p.is_dir()}
    assert folders == {json.loads(r.read_text())["run_info"]["experiment_name"] for r in RUNS}


def test_full_finetuning_counts_every_weight_once(llama_3b):
    if not COMPARISON.is_dir():
        pytest.skip("../shared/data/peft-method-comparison is not present")
    assert count(llama_3b, None) == (3_212_749_824, 3_212_749_824)  # tied embeddings counted once


# --- special cases on a tiny Llama: the reference is peft on real weights ---------------------------

def tiny_llama(layers: int = 3):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, vocab_size=128, tie_word_embeddings=True)


def real_count(config, adapter_config: dict, seed: int = 0) -> tuple[int, int]:
    from peft import PeftConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_config(config, dtype=torch.float32), PeftConfig.from_peft_type(**adapter_config))
    return model.get_nb_trainable_parameters()


@pytest.mark.parametrize("adapter_config", [
    {"peft_type": "SHIRA", "r": 2, "target_modules": ["q_proj", "v_proj"]},  # mask built with nonzero(): needs data
    {"peft_type": "UNILORA", "r": 4, "theta_d_length": 16, "target_modules": ["q_proj", "v_proj"]},  # one vector shared by all blocks
    {"peft_type": "BOFT", "boft_block_size": 4, "target_modules": ["q_proj", "down_proj"]},
    {"peft_type": "ADAMSS", "r": 8, "num_subspaces": 3, "subspace_rank": 1, "target_modules": ["q_proj", "v_proj"]},
], ids=lambda c: c["peft_type"])
def test_inits_that_need_data_extrapolate_exactly(adapter_config):
    config = tiny_llama(layers=5)
    assert count(config, adapter_config, {"dtype": "float32"}) == real_count(config, adapter_config)


def test_adalora_ranknum_is_not_counted_as_trainable():
    """Current peft trains ranknum on real bf16 weights (see _freeze_bookkeeping); the published runs did not."""
    from peft import AdaLoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config, adapter = tiny_llama(), {"peft_type": "ADALORA", "total_step": 100, "init_r": 12, "target_r": 8}
    model = get_peft_model(AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16), AdaLoraConfig(total_step=100, init_r=12, target_r=8))
    ranknums = [p for n, p in model.named_parameters() if ".ranknum." in n]
    assert len(ranknums) == 2 * config.num_hidden_layers and all(p.requires_grad for p in ranknums)  # q_proj and v_proj per block
    trainable, total = model.get_nb_trainable_parameters()
    assert count(config, adapter) == (trainable - len(ranknums), total)


def test_lora_fa_trainable_set_comes_from_the_optimizer():
    config, adapter = tiny_llama(), {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    lora_a = config.num_hidden_layers * 4 * (64 + 64)  # q and v take 64 inputs each
    both, _ = count(config, adapter)
    fa, _ = count(config, adapter, {"optimizer_type": "lora-fa", "optimizer_kwargs": {"r": 4, "lora_alpha": 8, "lr": 1e-4}})
    assert both - fa == lora_a
    adamw, _ = count(config, adapter, {"optimizer_type": "AdamW", "optimizer_kwargs": {"lr": 1e-4}})
    assert adamw == both


def test_adamss_without_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(TpmeError, match=r"scikit-learn.*tpme\[causal-lm\]"):
        count(tiny_llama(), {"peft_type": "ADAMSS", "r": 8, "num_subspaces": 3, "target_modules": ["q_proj"]})


def test_params_command_without_scikit_learn_exits_2_naming_the_extra(monkeypatch, tmp_path, capsys):
    """peft's AdaMSS config imports scikit-learn as it is built: the file loader checks first, so the
    user sees the extra to install, not a traceback (the CI image once lacked it)."""
    from tpme.cli import main

    monkeypatch.setitem(sys.modules, "sklearn", None)
    file = tmp_path / "adamss" / "small" / "adapter_config.json"
    file.parent.mkdir(parents=True)
    file.write_text(json.dumps({"peft_type": "ADAMSS", "r": 8, "num_subspaces": 3, "target_modules": ["q_proj"]}))
    assert main(["params", "--scenario", "causal-lm", "--model", "tiny", "--peft-config", str(file), "--json"]) == 2
    err = capsys.readouterr().err
    assert "scikit-learn" in err and "tpme[causal-lm]" in err and "Traceback" not in err


def test_value_dependent_settings_are_refused_before_packages_are_needed(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(TpmeError, match="follows the checkpoint"):
        count(tiny_llama(), {"peft_type": "ADAMSS", "r": 8, "num_subspaces": 3, "target_modules": ["q_proj"], "use_dynamic_rank": True})


@pytest.mark.parametrize("adapter_config, message", [
    ({"peft_type": "NOT_A_METHOD"}, "unknown peft_type"),
    ({"peft_type": "LORA", "target_modules": ["no_such_proj"]}, "cannot be applied"),
    ({"peft_type": "BOFT", "boft_block_size": 4, "target_modules": ["q_proj"], "layers_to_transform": [0]}, "adapted alike"),
    ({"peft_type": "ADAMSS", "r": 8, "num_subspaces": 3, "target_modules": ["q_proj"], "use_dynamic_rank": True}, "follows the checkpoint"),
])
def test_bad_adapter_configs_are_refused(adapter_config, message):
    with pytest.raises(TpmeError, match=message):
        count(tiny_llama(), adapter_config)


def test_quantised_weights_are_refused():
    with pytest.raises(TpmeError, match="int4"):
        count(tiny_llama(), {"peft_type": "LORA", "target_modules": ["q_proj"]}, {"dtype": "int4"})


# --- experiment folders --------------------------------------------------------------------------------

DEFAULTS = {"dtype": "bfloat16", "max_seq_length": 768, "batch_size": 4, "max_steps": 5000, "use_gc": False, "grad_norm_clip": 1.0,
            "optimizer_type": "AdamW", "optimizer_kwargs": {"lr": 1e-4, "weight_decay": 0.1}, "use_amp": False, "autocast_adapter_dtype": True,
            "compile": False, "lr_scheduler": "cosine", "model_id": "meta-llama/Llama-3.2-3B"}


def suite(tmp_path: Path, method: str = "lora", name: str = "rank8", adapter: dict | None = None, params: dict | str | None = None) -> Path:
    (tmp_path / "default_training_params.json").write_text(json.dumps(DEFAULTS))
    folder = tmp_path / "experiments" / method / name
    folder.mkdir(parents=True)
    if adapter is not None:
        (folder / "adapter_config.json").write_text(json.dumps(adapter))
    if params is not None:
        (folder / "training_params.json").write_text(params if isinstance(params, str) else json.dumps(params))
    return folder


def test_experiment_params_replace_defaults_key_by_key(tmp_path):
    folder = suite(tmp_path, adapter={"peft_type": "LORA", "r": 8}, params={"batch_size": 2, "optimizer_kwargs": {"lr": 0.005}, "use_gc": True})
    e = load_experiment(folder)
    assert e.label == "lora/rank8" and e.adapter_config == {"peft_type": "LORA", "r": 8} and not e.is_full_finetuning
    assert (e.batch_size, e.max_seq_length, e.gradient_checkpointing, e.dtype, e.torch_dtype) == (2, 768, True, "bfloat16", torch.bfloat16)
    # shallow, as peft's get_train_config: the experiment's optimizer_kwargs replace the default dict whole
    assert e.optimizer.name == "AdamW" and e.optimizer.kwargs == {"lr": 0.005} and e.optimizer.weight_decay is None
    assert e.grad_clip == 1.0 and e.sources == (tmp_path / "default_training_params.json", folder / "training_params.json")


def test_no_adapter_config_is_full_finetuning_and_zero_clip_is_none(tmp_path):
    e = load_experiment(suite(tmp_path, method="full-finetuning", name="lr1e-5", params={"grad_norm_clip": 0, "optimizer_type": "lora-fa"}))
    assert e.is_full_finetuning and e.adapter_config is None and e.label == "full-finetuning/lr1e-5"
    assert e.grad_clip is None and e.optimizer.is_peft


def test_label_of_a_bare_config_path(tmp_path):
    folder = suite(tmp_path, method="shira", name="r32", adapter={"peft_type": "SHIRA"})
    assert label_for_config(folder / "adapter_config.json") == "shira/r32" == label_for_config(folder)


@pytest.mark.parametrize("setup, message", [
    (lambda p: p / "nowhere", "does not exist"),
    (lambda p: (p / "experiments" / "a" / "b").mkdir(parents=True) or p / "experiments" / "a" / "b", "neither adapter_config.json nor training_params.json"),
    (lambda p: suite(p, params="{not json"), r"training_params.json is not valid JSON"),
    (lambda p: suite(p, params="[1, 2]"), "holds a JSON list, not an object"),
    (lambda p: suite(p, params={"batchsize": 8}), "'batchsize'.*use only these keys"),
    (lambda p: suite(p, adapter={"r": 8}), "no \"peft_type\""),
], ids=["missing folder", "empty folder", "malformed json", "not an object", "unknown key", "no peft_type"])
def test_bad_folders_name_the_file_and_fix(tmp_path, setup, message):
    with pytest.raises(TpmeError, match=message) as info:
        load_experiment(setup(tmp_path))
    assert info.value.fix


def test_missing_defaults_three_levels_up(tmp_path):
    folder = suite(tmp_path, adapter={"peft_type": "LORA"})
    (tmp_path / "default_training_params.json").unlink()
    with pytest.raises(TpmeError, match="no default_training_params.json three levels above") as info:
        load_experiment(folder)
    assert str(tmp_path / "default_training_params.json") in str(info.value)


def test_badly_typed_settings_name_the_file_that_set_them(tmp_path):
    folder = suite(tmp_path, adapter={"peft_type": "LORA"}, params={"batch_size": "4", "dtype": "int4", "grad_norm_clip": -1})
    e = load_experiment(folder)
    for accessor, pattern in (("batch_size", "batch_size='4'.*is not a int"), ("torch_dtype", "int4"), ("grad_clip", "grad_norm_clip=-1")):
        with pytest.raises(TpmeError, match=pattern) as info:
            getattr(e, accessor)
        assert str(folder / "training_params.json") in str(info.value)


def test_params_command_gives_every_published_count(capsys):
    """`tpme params --scenario causal-lm --peft-config FILE ... --json`, the command of issue 14 item 5,
    over every adapter config of the shared folder, plus fft."""
    if not COMPARISON.is_dir():
        pytest.skip("../shared/data/peft-method-comparison is not present")
    from tpme.cli import main

    published = {(r := json.loads(p.read_text()))["run_info"]["experiment_name"]: r["train_info"] for p in RUNS}
    configs = sorted((COMPARISON / "experiments").glob("*/*/adapter_config.json"))
    argv = ["params", "--scenario", "causal-lm", "--model", str(COMPARISON / "llama-3.2-3b" / "config.json"), "--methods", "fft", "--json"]
    for c in configs:
        argv += ["--peft-config", str(c)]
    assert main(argv) == 0
    rows = {r["label"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["fft"]["trainable_params"] == 3_212_749_824
    assert len(configs) == len(published) - 1  # full fine-tuning has no adapter config
    for c in configs:
        row, run = rows[label_for_config(c)], published[label_for_config(c)]
        assert (row["trainable_params"], row["total_params"]) == (run["num_trainable_params"], run["num_total_params"]), row["label"]
