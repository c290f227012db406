"""`tpme estimate --peft-experiment DIR`: an experiment folder in peft's layout estimated as written
(its files set batch, length, dtype, optimizer, clipping, checkpointing), on a tmp folder with the tiny decoder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tpme.cli import main
from tpme.errors import TpmeError
from tpme.scenarios.causal_lm.experiment_run import ExperimentMethod, experiment_overrides
from tpme.scenarios.causal_lm.peft_experiment import load_experiment

DEFAULTS = {"model_id": "tiny", "dtype": "bfloat16", "max_seq_length": 24, "batch_size": 2, "max_steps": 300, "compile": False, "use_gc": False, "seed": 0,
            "grad_norm_clip": 1.0, "optimizer_type": "AdamW", "optimizer_kwargs": {"lr": 1e-4, "weight_decay": 0.1}, "use_amp": False, "autocast_adapter_dtype": True}
LORA = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}


def _experiment(root: Path, label: str, adapter: dict | None = None, params: dict | None = None) -> Path:
    folder = root / "experiments" / label
    folder.mkdir(parents=True)
    if adapter is not None:
        (folder / "adapter_config.json").write_text(json.dumps(adapter))
    if params is not None:
        (folder / "training_params.json").write_text(json.dumps(params))
    return folder


@pytest.fixture
def suite(tmp_path) -> Path:
    (tmp_path / "default_training_params.json").write_text(json.dumps(DEFAULTS))
    return tmp_path


def test_overrides_come_from_the_merged_files(suite):
    plain = experiment_overrides(load_experiment(_experiment(suite, "lora/r4", LORA)))
    assert plain == {"batch_size": 2, "seq_len": 24, "min_seq_len": None, "weights_dtype": "bf16", "precision": "bf16", "optimizer": "adamw",
                     "optimizer_impl": "foreach", "grad_clip": 1.0, "gradient_checkpointing": False, "weight_decay": 0.1, "lr": 1e-4}
    fa = experiment_overrides(load_experiment(_experiment(suite, "lora/r4-fa", LORA, {"optimizer_type": "lora-fa", "optimizer_kwargs": {"r": 4, "lr": 2e-4},
                                                                                     "use_gc": True, "grad_norm_clip": 0, "batch_size": 3})))
    # peft's merge is shallow: optimizer_kwargs without weight_decay leaves torch's AdamW default
    assert (fa["optimizer"], fa["weight_decay"], fa["lr"], fa["grad_clip"], fa["gradient_checkpointing"], fa["batch_size"]) == ("adamw", 0.01, 2e-4, None, True, 3)
    amp = experiment_overrides(load_experiment(_experiment(suite, "full-finetuning/fp32", None, {"dtype": "float32", "use_amp": True})))
    assert (amp["weights_dtype"], amp["precision"]) == ("fp32", "bf16")


@pytest.mark.parametrize("params, match", [({"optimizer_type": "SGD"}, "optimizer_type 'SGD'"), ({"dtype": "float16"}, "float16"), ({"use_amp": True}, "use_amp")])
def test_settings_tpme_does_not_model_are_refused_naming_the_file(suite, params, match):
    exp = load_experiment(_experiment(suite, "lora/bad", LORA, params))
    with pytest.raises(TpmeError, match=match) as e:
        experiment_overrides(exp)
    assert "training_params.json" in e.value.fix


def test_method_is_the_adapter_file_or_full_finetuning(suite):
    lora = ExperimentMethod(load_experiment(_experiment(suite, "lora/r4", LORA)))
    fft = ExperimentMethod(load_experiment(_experiment(suite, "full-finetuning/lr", None, {"optimizer_kwargs": {"lr": 1e-5}})))
    assert (lora.label, lora.name.startswith("peft-config:")) == ("lora/r4", True)
    assert (fft.label, fft.name) == ("full-finetuning/lr", "fft")


def test_estimate_cli_estimates_each_folder_as_written(suite, capsys):
    dirs = [_experiment(suite, "lora/r4", LORA), _experiment(suite, "lora/r4-fa", LORA, {"optimizer_type": "lora-fa", "optimizer_kwargs": {"r": 4, "lr": 1e-4}, "use_gc": True}),
            _experiment(suite, "full-finetuning/lr", None, {"optimizer_kwargs": {"lr": 1e-5}})]
    argv = ["estimate", "--scenario", "causal-lm", "--model", "tiny", "--gpu", "l40s", "--mean-tokens", "10.4", "--json"]
    for d in dirs:
        argv += ["--peft-experiment", str(d)]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    by = {r["label"]: r for r in rows}
    assert list(by) == ["lora/r4", "lora/r4-fa", "full-finetuning/lr"]
    for r in rows:
        assert r["status"] == "ok" and r["gpu"] == "l40s" and r["batch"]["input_ids"] == [2, 24] and r["mean_seq_len"] == 10
        assert r["predicted_reserved_bytes"] > r["peak_memory_bytes"] > 0
        assert 0 < r["predicted_step_time_at_mean_s"] < r["predicted_step_time_s"]
        assert r["predicted_train_time_at_mean_s"] == pytest.approx(r["predicted_step_time_at_mean_s"] * 300)
    assert by["lora/r4-fa"]["gradient_checkpointing"] and not by["lora/r4"]["gradient_checkpointing"]
    assert by["lora/r4-fa"]["trainable_params"] < by["lora/r4"]["trainable_params"]  # LoRA-FA freezes lora_A
    assert by["full-finetuning/lr"]["trainable_params"] == by["full-finetuning/lr"]["total_params"]


@pytest.mark.parametrize("extra, match", [
    (["--mean-tokens", "100"], "outside"),
    (["--methods", "fft"], "cannot be combined"),
    (["--batch-size", "8"], "cannot be combined"),
])
def test_estimate_cli_refuses_bad_input_before_estimating(suite, capsys, extra, match):
    d = _experiment(suite, "lora/r4", LORA)
    assert main(["estimate", "--scenario", "causal-lm", "--model", "tiny", "--gpu", "l40s", "--peft-experiment", str(d), *extra]) == 2
    assert match in capsys.readouterr().err


def test_estimate_cli_refuses_mean_tokens_alone_and_a_folder_that_is_no_experiment(suite, capsys):
    assert main(["estimate", "--scenario", "causal-lm", "--model", "tiny", "--mean-tokens", "10"]) == 2
    assert "--mean-tokens needs --peft-experiment" in capsys.readouterr().err
    empty = suite / "experiments" / "lora" / "empty"
    empty.mkdir(parents=True)
    assert main(["estimate", "--scenario", "causal-lm", "--model", "tiny", "--peft-experiment", str(empty)]) == 2
    assert "no experiment folder" in capsys.readouterr().err


@pytest.mark.parametrize("impl, on_cuda, expected", [("foreach", True, "AdamW (foreach)"), ("fused", True, "AdamW (fused)"), ("foreach", False, "AdamW (single-tensor)")])
def test_optimizer_implementation_follows_the_config_on_cuda(impl, on_cuda, expected):
    """peft's suite gets torch's default AdamW, foreach on CUDA; the estimate (fake CPU tensors) must ask for it."""
    import torch

    from tpme.scenarios import get_scenario
    from tpme.scenarios.causal_lm.training import optimizer_for
    from tpme.training.optim import describe

    cfg = get_scenario("causal-lm").preset("ci").replace(optimizer_impl=impl)
    model = torch.nn.Linear(2, 2)
    assert describe(optimizer_for(cfg, model, fused=on_cuda)) == expected
