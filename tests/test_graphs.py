"""CUDA-graph readiness, checked on any machine, and the capture itself where a GPU exists.

On a CPU: static-shape batches give the same loss and gradients as unpadded ones, the
cached-IISAN step has no host synchronisation (the audit also proves it catches one),
and the capture decision names why it is not used. On a GPU: the graphed loss and
gradients equal the eager ones, and a run records that it captured.
"""
from __future__ import annotations

import tempfile
from itertools import islice

import numpy as np
import pytest
import torch

from tpme.bench.cell import CellSpec, run_cell
from tpme.training.graphs import GraphDecision, GraphedLoss, decide, prepare_graphs
from tpme.scenarios.recommendation.training import build_training
from tpme.bench.step_audit import audit
from tpme.cli import main as cli
from tpme.datasets.bundle import DataBundle
from tpme.errors import TpmeError
from tpme.methods.registry import get_method

CUDA = torch.cuda.is_available()


def _setup(cfg, bundle_path, method: str, device: str = "cpu", cache: str | None = None):
    bundle = DataBundle.load(bundle_path)
    return build_training(cfg, get_method(method), bundle, torch.device(device), cache or tempfile.mkdtemp())


def _no_dropout(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if hasattr(m, "dropout") and isinstance(m.dropout, float):
            m.dropout = 0.0


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = model(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method", ["iisan-cached", "frozen"])
def test_static_batches_give_the_same_loss_and_gradients(ci_config, ci_bundle_path, method):
    setup = _setup(ci_config, ci_bundle_path, method)
    model, loader = setup.model.eval(), setup.loader
    users = loader.samples[: loader.batch_size - 3]  # a short batch: static pads users too
    dynamic = loader.collate(users)
    loader.static = True
    static = loader.collate(users)
    capacity = loader.batch_size * users.shape[1]
    assert static.seq_index.shape == (loader.batch_size, users.shape[1])
    assert static.own.shape == (loader.batch_size, capacity) and static.items.item_ids.shape == (capacity,)
    assert int(static.real.sum()) == len(dynamic.items.item_ids)
    assert (static.seq_index[len(users):] == -1).all()
    loss_d, grads_d = _loss_and_grads(model, dynamic)
    loss_s, grads_s = _loss_and_grads(model, static)
    assert loss_s == pytest.approx(float(loss_d), rel=1e-5)
    assert grads_d.keys() == grads_s.keys() and grads_d
    for name in grads_d:
        torch.testing.assert_close(grads_s[name], grads_d[name], rtol=1e-4, atol=1e-6, msg=name)


def test_a_static_epoch_has_one_shape(ci_config, ci_bundle_path):
    loader = _setup(ci_config, ci_bundle_path, "iisan-cached").loader
    loader.static, loader.batch_size = True, 10
    shapes = {(b.seq_index.shape, b.own.shape, b.log_pop.shape, b.real.shape, b.items.item_ids.shape) for b in loader.epoch(0)}
    assert len(shapes) == 1 and len(loader.samples) % loader.batch_size != 0  # the short last batch was padded


def test_cached_iisan_step_never_synchronises_the_host(ci_config, ci_bundle_path):
    setup = _setup(ci_config, ci_bundle_path, "iisan-cached")
    batch = next(setup.loader.epoch(0))

    def forward_backward():
        setup.trainer.loss(batch).backward()

    report = audit(forward_backward)
    assert report.kernels > 50
    assert not report.syncs, f"host synchronisations in the captured part of the step: {dict(report.syncs)}"


def test_the_audit_catches_host_synchronisation():
    x = torch.randn(8)
    assert audit(lambda: x[x > 0]).syncs
    assert audit(lambda: float(x.sum())).syncs
    assert not audit(lambda: torch.where(x > 0, x, 0.0).sum()).syncs


def test_capture_decision_names_the_reason(ci_config, ci_bundle_path):
    setup = _setup(ci_config, ci_bundle_path, "iisan-cached")
    cached, tower = get_method("iisan-cached"), setup.model.tower
    on_cpu = decide("auto", cached, tower, torch.device("cpu"), compiled=False)
    assert not on_cpu.used and "CUDA device" in on_cpu.reason
    assert decide("off", cached, tower, torch.device("cuda"), compiled=False).reason == "off"
    assert decide("auto", cached, tower, torch.device("cuda"), compiled=False).used  # cache beside the side networks
    assert "compile" in decide("auto", cached, tower, torch.device("cuda"), compiled=True).reason
    tower.install(torch.empty(3, *tower.text_cache.shape[1:], device="meta"), torch.empty(3, *tower.image_cache.shape[1:], device="meta"))
    assert "host memory" in decide("auto", cached, tower, torch.device("cuda"), compiled=False).reason
    fft = _setup(ci_config, ci_bundle_path, "fft")
    assert "data-dependent" in decide("auto", get_method("fft"), fft.model.tower, torch.device("cuda"), compiled=False).reason
    with pytest.raises(TpmeError, match="cannot be captured"):
        decide("on", get_method("fft"), fft.model.tower, torch.device("cuda"), compiled=False)


def test_graph_plumbing_rebuilds_the_batch_exactly(ci_config, ci_bundle_path, monkeypatch):
    """GraphedLoss with the capture itself stubbed out (it needs CUDA): a batch loaded into
    its input buffers, or passed directly, gives the model's own loss."""
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", lambda module, sample_args: module)
    setup = _setup(ci_config, ci_bundle_path, "iisan-cached")
    model, loader = setup.model.eval(), setup.loader
    loader.static = True
    first, second = islice(loader.epoch(0), 2)
    graphed = GraphedLoss(model, first, setup.device, "fp32")
    assert graphed.inputs[0].data_ptr() != first.items.item_ids.data_ptr()  # owns its buffers
    loaded = graphed.load(second)
    assert loaded.seq_index.data_ptr() == graphed.inputs[graphed.fields.index("seq_index")].data_ptr()
    assert graphed(loaded).item() == pytest.approx(model(second).item())
    assert graphed(first).item() == pytest.approx(model(first).item())
    second.real = None
    with pytest.raises(TpmeError, match="fields of the batch the CUDA graph was captured on"):
        graphed.load(second)


def test_failed_capture_falls_back_in_auto_and_fails_in_on(ci_config, ci_bundle_path, monkeypatch):
    def refuse(module, sample_args):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", refuse)
    setup = _setup(ci_config, ci_bundle_path, "iisan-cached")
    batch = next(setup.loader.epoch(0))
    auto = GraphDecision("auto", True, "captured")
    assert prepare_graphs(auto, setup.model, batch, setup.device, "fp32") is None
    assert not auto.used and auto.reason.startswith("capture failed, ran eagerly: RuntimeError")
    with pytest.raises(TpmeError, match="CUDA graph capture failed"):
        prepare_graphs(GraphDecision("on", True, "captured"), setup.model, batch, setup.device, "fp32")


def test_record_says_how_the_step_ran(ci_config, ci_bundle_path):
    rec = run_cell(CellSpec("iisan-cached", ci_config.to_dict(), str(ci_bundle_path), cache_dir=tempfile.mkdtemp())).to_dict()
    assert rec["status"] == "ok", rec.get("error")
    graphs = rec["execution"]["cuda_graphs"]
    assert graphs["mode"] == "auto" and graphs["used"] is (rec["device"].startswith("cuda"))
    assert rec["execution"]["static_shapes"] is graphs["used"]


@pytest.mark.skipif(CUDA, reason="checks the CPU refusal")
def test_cuda_graphs_on_without_a_gpu_is_bad_input(capsys):
    assert cli(["run", "--preset", "ci", "--methods", "iisan-cached", "--cuda-graphs", "on", "--device", "cpu"]) == 2
    assert "--cuda-graphs on needs a CUDA device" in capsys.readouterr().err


def test_unknown_graph_mode_is_refused(ci_config):
    with pytest.raises(TpmeError, match="cuda_graphs"):
        ci_config.replace(cuda_graphs="sometimes").validate()


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_graphed_loss_and_gradients_equal_eager(ci_config, ci_bundle_path, precision):
    cfg = ci_config.replace(device="cuda", precision=precision, cuda_graphs="off")
    setup = _setup(cfg, ci_bundle_path, "iisan-cached", "cuda")
    model, loader = setup.model, setup.loader
    _no_dropout(model)
    loader.static = True
    batches = [b.to(setup.device) for b in islice(loader.epoch(0), 3)]
    graphed = GraphedLoss(model, batches[0], setup.device, precision)
    tol = {"fp32": dict(rtol=1e-4, atol=1e-6), "fp16": dict(rtol=2e-2, atol=1e-3)}[precision]
    for batch in batches:
        setup.trainer.graphed_loss = None
        loss_e = setup.trainer.loss(batch)
        model.zero_grad(set_to_none=True)
        loss_e.backward()
        eager = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad(set_to_none=True)
        loss_g = graphed(batch)
        loss_g.backward()
        torch.testing.assert_close(loss_g.float(), loss_e.float(), **tol)
        for n, p in model.named_parameters():
            torch.testing.assert_close(p.grad, eager[n], **tol, msg=n)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_a_gpu_run_captures_cached_iisan(ci_config, ci_bundle_path):
    cfg = ci_config.replace(device="cuda", precision="fp16", steps=20)
    rec = run_cell(CellSpec("iisan-cached", cfg.to_dict(), str(ci_bundle_path), cache_dir=tempfile.mkdtemp())).to_dict()
    assert rec["status"] == "ok", rec.get("error")
    assert rec["execution"]["cuda_graphs"]["used"], rec["execution"]
    assert rec["execution"]["optimizer"] == "Adam (fused)"
    assert np.isfinite(rec["losses"]["first"]) and np.isfinite(rec["losses"]["last"])
    assert rec["execution"]["cuda_graphs"]["capture_s"] > 0
