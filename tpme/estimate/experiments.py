"""Estimates of peft experiment folders as they are written (`tpme estimate --peft-experiment`).

The experiment's files set batch size, maximum length, weight dtype, optimizer, clipping and
gradient checkpointing (`causal_lm.experiment_run`). Memory is estimated at the maximum length:
the longest batch sets the peak. Time is a step at the maximum length and, given the data's
mean tokens per sample, a step at that length too: peft's suite batches sequences of similar
length (its buckets), so a typical step is about B x mean tokens, and step time is close to
linear in length at these sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tpme.errors import TpmeError
from tpme.estimate.api import gpu_record, step_record
from tpme.estimate.estimator import StepEstimate, estimate_step
from tpme.estimate.gpus import Gpu
from tpme.estimate.predict import step_time_s
from tpme.scenarios.base import Scenario
from tpme.scenarios.causal_lm.config import LmRunConfig
from tpme.scenarios.causal_lm.experiment_run import ExperimentMethod, experiment_config
from tpme.scenarios.causal_lm.peft_experiment import PeftExperiment


@dataclass(frozen=True)
class ExperimentEstimate:
    """The device-independent estimate of one experiment: at its longest batch, and at the mean length."""

    experiment: PeftExperiment
    cfg: LmRunConfig
    method: str  # the method's registry name (`fft`, `peft-config:<path>`)
    at_max: StepEstimate
    mean_tokens: float | None = None
    at_mean: StepEstimate | None = None


def mean_length(mean_tokens: float, max_len: int) -> int:
    """The sequence length a step at `mean_tokens` per sample is estimated at."""
    n = round(mean_tokens)
    if not 2 <= n <= max_len:
        raise TpmeError(f"--mean-tokens {mean_tokens:g} is outside [2, max_seq_length={max_len}]", "give the mean tokens per training sample, at most the experiment's max_seq_length")
    return n


def estimate_experiment(scenario: Scenario, base: LmRunConfig, exp: PeftExperiment, mean_tokens: float | None = None) -> ExperimentEstimate:
    cfg = experiment_config(exp, base)
    method = ExperimentMethod(exp)
    scenario.check_method(method)
    at_max = estimate_step(scenario, cfg, method, scenario.data_shape(cfg), target="cuda")
    if mean_tokens is None:
        return ExperimentEstimate(exp, cfg, method.name, at_max)
    short = cfg.replace(seq_len=mean_length(mean_tokens, cfg.data.seq_len))
    at_mean = estimate_step(scenario, short, ExperimentMethod(exp), scenario.data_shape(short), target="cuda")
    return ExperimentEstimate(exp, cfg, method.name, at_max, mean_tokens, at_mean)


def experiment_records(est: ExperimentEstimate, gpus: list[Gpu]) -> list[dict[str, Any]]:
    """One record per GPU: the usual estimate fields at the maximum length, the experiment's
    settings, and with a mean length the step time and the time of `max_steps` steps there."""
    exp, cfg = est.experiment, est.cfg
    steps = exp.max_steps
    base = {
        "label": exp.label, "experiment": str(exp.path), "method": est.method, "scenario": "causal-lm", "model": cfg.model,
        "peft_type": exp.peft_type, "batch_size": cfg.train.batch_size, "max_seq_length": cfg.data.seq_len, "weights_dtype": cfg.train.weights_dtype,
        "precision": cfg.train.precision, "optimizer": exp.optimizer.name, "grad_clip": cfg.train.grad_clip, "gradient_checkpointing": cfg.train.gradient_checkpointing,
        "max_steps": steps, **step_record(est.at_max),
    }
    out = []
    for gpu in gpus:
        rec = {**base, **gpu_record(est.at_max, gpu, steps)}
        if est.at_mean is not None:
            at_mean = step_time_s(est.at_mean.cost, gpu)
            rec.update(mean_tokens=est.mean_tokens, mean_seq_len=est.at_mean.batch_shapes["input_ids"][1],
                       predicted_step_time_at_mean_s=at_mean, predicted_train_time_at_mean_s=at_mean * steps)
        out.append({**rec, "status": "ok"})
    return out
