"""The recommendation scenario's two protocols on tiny models: the official IISAN code's
(workload, batch, learning rates, initialisation, evaluation masking, lora-official) and
tpme's, which stays what it was."""
import dataclasses
import gc
import json
import weakref

import numpy as np
import pytest
import torch

from tpme.cli import main
from tpme.datasets.bundle import DataBundle
from tpme.methods.registry import get_method
from tpme.reports.compare import mismatches
from tpme.reports.provenance import collect
from tpme.metrics.tpme import Weights
from tpme.reports.summary import summarise
from tpme.results.record import Record
from tpme.scenarios import get_scenario
from tpme.scenarios.recommendation import protocol
from tpme.scenarios.recommendation.config import preset
from tpme.scenarios.recommendation.model import OfficialRecommender, Recommender, assemble
from tpme.scenarios.recommendation.ranking import hit_ndcg, mask_history, mask_whole_history, target_ranks
from tpme.scenarios.recommendation.training import build_training, optimizer_for

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def bundle(ci_bundle_path):
    return DataBundle.load(ci_bundle_path)


def cfg(proto: str, **changes):
    return preset("ci").replace(protocol=proto, embed_dim=32, batch_size=8, **changes)


def setup(method: str, bundle: DataBundle, proto: str, **changes):
    torch.manual_seed(0)
    return build_training(cfg(proto, **changes), get_method(method), bundle, CPU)


# --- workload -------------------------------------------------------------------------------

def test_official_batch_embeds_every_slot_padding_and_repeats_included(bundle):
    tpme_batch = next(setup("frozen", bundle, "tpme").loader.epoch(0))
    official_batch = next(setup("frozen", bundle, "official").loader.epoch(0))
    b, seq = official_batch.seq_index.shape
    assert len(official_batch.items.item_ids) == b * seq  # all B x (L+1) slots
    ids = official_batch.items.item_ids
    distinct_real = len(torch.unique(ids[ids > 0]))
    assert len(tpme_batch.items.item_ids) == distinct_real < b * seq  # tpme: the distinct real items only
    assert torch.equal(official_batch.real, ids > 0)  # padding slots are never candidates
    assert official_batch.own is None  # the official loss builds its mask on the device


def test_official_loss_masks_own_items_but_the_target_in_a_per_user_loop(bundle):
    """A slot is masked for a user's position when it holds an item of that user's sequence and
    is not the position's target slot, and padding slots for everyone: built as the official
    code builds it (OfficialRecommender), equal to the vectorised mask tpme's loss uses."""
    s = setup("frozen", bundle, "official")
    official_batch = next(s.loader.epoch(0))
    model = s.model
    assert isinstance(model, OfficialRecommender)
    b, seq = official_batch.seq_index.shape
    ids, c = official_batch.items.item_ids, len(official_batch.items.item_ids)
    target = official_batch.seq_index[:, 1:].clamp(min=0)
    masked = model.mask_candidates(torch.zeros(b, seq - 1, c), official_batch, target) == OfficialRecommender.MASKED
    valid = official_batch.seq_index[:, :-1] >= 0
    for row in range(b):
        own_ids = set(ids[official_batch.seq_index[row][official_batch.seq_index[row] >= 0]].tolist())
        for j in range(seq - 1):
            if not valid[row, j]:
                continue
            expected = [(int(i) in own_ids and slot != row * seq + j + 1) or int(i) == 0 for slot, i in enumerate(ids.tolist())]
            assert masked[row, j].tolist() == expected
    own = torch.stack([torch.isin(ids, ids[official_batch.seq_index[r][official_batch.seq_index[r] >= 0]]) for r in range(b)])
    vectorised = Recommender.mask_candidates(model, torch.zeros(b, seq - 1, c), dataclasses.replace(official_batch, own=own), target) < 0
    assert torch.equal(masked[valid], vectorised[valid])


def test_official_step_trains_on_all_slots(bundle):
    s = setup("frozen", bundle, "official")
    losses = [float(s.trainer.step(b)) for b in s.loader.epoch(0)]
    assert all(np.isfinite(losses))


def test_official_batch_size_per_method():
    paper = preset("paper")
    assert paper.protocol == "official"
    scenario = get_scenario("recommendation")
    assert scenario.config_for_method(paper, "iisan").train.batch_size == 64
    assert scenario.config_for_method(paper, "iisan-cached").train.batch_size == 64
    assert scenario.config_for_method(paper, "fft").train.batch_size == 32
    assert scenario.config_for_method(paper, "iisan-cached").train.cuda_graphs == "off"
    tpme_paper = paper.replace(protocol="tpme")
    assert scenario.config_for_method(tpme_paper, "iisan") == tpme_paper


# --- learning rates -------------------------------------------------------------------------

def _rates(method: str, proto: str) -> dict[str, float]:
    model = assemble(cfg(proto), get_method(method)).model
    opt = optimizer_for(cfg(proto), model, fused=False)
    return {g.get("name", "all"): g["lr"] for g in opt.param_groups}


def test_official_learning_rate_groups():
    assert _rates("fft", "official") == {"text": 5e-5, "image": 1e-4, "recsys": 1e-4}
    assert _rates("adapter", "official") == {"adapter": 4e-4, "recsys": 2e-4}
    assert _rates("lora-official", "official") == {"text": 5e-5, "image": 1e-4, "adapter": 4e-4, "recsys": 2e-4}
    assert _rates("iisan", "official") == {"san": 1e-4, "text": 5e-5, "image": 1e-4, "recsys": 2e-4}
    assert _rates("fft", "tpme") == {"all": 1e-4}


def test_official_iisan_groups_hold_the_right_parameters():
    model = assemble(cfg("official"), get_method("iisan")).model
    groups = {g["name"]: {id(p) for p in g["params"]} for g in protocol.param_groups(model)}
    side = model.tower.side
    assert {id(side.heads[0].hidden_weight), id(side.heads[0].hidden_bias)} == groups["text"]
    assert {id(side.heads[1].hidden_weight), id(side.heads[1].hidden_bias), id(side.gate_rows[1])} == groups["image"]
    assert {id(p) for p in side.sans.parameters()} == groups["san"]
    assert id(side.fuse.weight) in groups["recsys"] and id(side.heads[1].out_weight) in groups["recsys"]
    assert all(opt_p.requires_grad for g in protocol.param_groups(model) for opt_p in g["params"])


# --- initialisation -------------------------------------------------------------------------

def test_official_initial_weights():
    torch.manual_seed(0)
    official = assemble(cfg("official"), get_method("adapter")).model
    torch.manual_seed(0)
    tpme = assemble(cfg("tpme"), get_method("adapter")).model
    ln = [m for m in official.user_encoder.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert ln and all(m.eps == 1e-6 for m in ln)
    assert all(m.eps == 1e-5 for m in tpme.user_encoder.modules() if isinstance(m, torch.nn.LayerNorm))
    for m in official.user_encoder.modules():
        if isinstance(m, torch.nn.Linear) and m.bias is not None:
            assert torch.count_nonzero(m.bias) == 0
    assert torch.count_nonzero(official.tower.heads.image_proj.bias) == 0
    ups = lambda model: [m.up.weight for m in model.modules() if type(m).__name__ == "Bottleneck"]  # noqa: E731
    assert all(torch.count_nonzero(w) == 0 for w in ups(tpme))
    official_ups = torch.cat([w.flatten() for w in ups(official)])
    assert 0.007 < float(official_ups.detach().std()) < 0.013
    # BERT: the official adapter follows the output dropout
    assert type(official.tower.text.encoder.layer[0].output.dropout).__name__ == "AdaptedLinear"
    assert type(tpme.tower.text.encoder.layer[0].output.dense).__name__ == "AdaptedLinear"


def test_official_san_blocks_start_near_identity():
    torch.manual_seed(0)
    official = assemble(cfg("official"), get_method("iisan")).model.tower.side
    tpme = assemble(cfg("tpme"), get_method("iisan")).model.tower.side
    for san in official.sans:
        assert torch.count_nonzero(san.down_bias) == 0 and torch.count_nonzero(san.up_bias) == 0
        assert float(san.up_weight.detach().std()) < 0.02
    assert any(float(san.up_weight.detach().abs().max()) > 0.05 for san in tpme.sans)  # nn.Linear's uniform init
    assert not hasattr(tpme, "gate_rows") and not hasattr(official, "gate_theta")


def test_official_backbones_keep_the_pooler_and_use_eager_attention():
    official = assemble(cfg("official"), get_method("bitfit")).extras["backbones"]
    tpme = assemble(cfg("tpme"), get_method("bitfit")).extras["backbones"]
    assert official.text.pooler is not None and official.text.pooler.dense.bias.requires_grad
    assert not official.text.pooler.dense.weight.requires_grad
    assert official.text.config._attn_implementation == "eager" == official.image.config._attn_implementation
    assert tpme.text.pooler is None and tpme.text.config._attn_implementation == "sdpa"
    fft = assemble(cfg("official"), get_method("fft")).extras["backbones"]
    assert not any(p.requires_grad for p in fft.text.pooler.parameters())


def _last_layer_alive_after(tower, items, backward: bool) -> bool:
    refs = []
    layer = tower.text.encoder.layer[-1]  # hidden state L: a used layer
    hook = layer.register_forward_hook(lambda m, a, o: refs.append(weakref.ref(o[0] if isinstance(o, tuple) else o)))
    out = tower(items)
    hook.remove()
    if backward:
        out.sum().backward()
    gc.collect()
    return refs[0]() is not None


def test_official_uncached_iisan_keeps_full_states_until_backward(bundle):
    official = setup("iisan", bundle, "official")
    official.model.train()
    tower = official.model.tower
    assert tower.text.training and tower.image.training  # backbones follow train mode (dropout on)
    items = next(official.loader.epoch(0)).items
    assert _last_layer_alive_after(tower, items, backward=False)
    assert not _last_layer_alive_after(tower, items, backward=True)
    plain = setup("iisan", bundle, "tpme")
    plain.model.train()
    assert not plain.model.tower.text.training
    assert not _last_layer_alive_after(plain.model.tower, next(plain.loader.epoch(0)).items, backward=False)


# --- evaluation masking ---------------------------------------------------------------------

def test_whole_history_masking_masks_a_repeated_target():
    scores = torch.arange(30, dtype=torch.float).repeat(2, 1)
    hist = torch.tensor([[0, 3, 5], [0, 2, 4]])
    target = torch.tensor([5, 1])
    tpme = mask_history(scores.clone(), hist, target)
    official = mask_whole_history(scores.clone(), hist)
    assert torch.isfinite(tpme[0, 5]) and torch.isinf(official[0, 5])  # target bought before
    assert torch.isinf(tpme[0, 3]) and torch.isinf(official[0, 3])
    hit, _ = hit_ndcg(target_ranks(official, target), 10)
    assert hit[0] == 0  # a certain miss under the official protocol


def test_official_evaluator_masks_the_whole_history(bundle):
    s = setup("frozen", bundle, "official", eval=True)
    t = setup("frozen", bundle, "tpme", eval=True)
    assert s.evaluator.info["masking"] != t.evaluator.info["masking"]
    masked = s.evaluator.masked["test"]
    seqs = bundle.sequences
    longest = max(range(len(seqs)), key=lambda i: len(seqs[i]))
    assert set(masked[longest][masked[longest] > 0].tolist()) == set(seqs[longest][:-1].tolist())
    assert len(seqs[longest]) - 1 > bundle.max_seq_len or masked.shape[1] >= bundle.max_seq_len
    out = s.evaluator.evaluate(s.model)
    assert 0.0 <= out["test"]["hr@10"] <= 1.0


# --- lora-official --------------------------------------------------------------------------

def test_lora_official_replaces_pretrained_qv_with_random_frozen_layers():
    torch.manual_seed(0)
    plain = assemble(cfg("tpme"), get_method("frozen")).extras["backbones"]
    torch.manual_seed(0)
    assembly = assemble(cfg("tpme"), get_method("lora-official"))
    text = assembly.extras["backbones"].text
    q_new = text.encoder.layer[0].attention.self.query
    q_old = plain.text.encoder.layer[0].attention.self.query
    assert not torch.equal(q_new.weight, q_old.weight)  # not the backbone's weights
    assert not q_new.weight.requires_grad and q_new.bias.requires_grad and q_new.lora_A.requires_grad
    assert q_new.scale == pytest.approx(1 / 8)
    assert torch.count_nonzero(q_new.lora_B) == 0
    x = torch.randn(3, q_new.in_features)
    assert torch.allclose(q_new(x), torch.nn.functional.linear(x, q_new.weight, q_new.bias))
    # tpme's lora keeps the pretrained Q/V
    torch.manual_seed(0)
    lora = assemble(cfg("tpme"), get_method("lora")).extras["backbones"]
    assert torch.equal(lora.text.encoder.layer[0].attention.self.query.base_layer.weight, q_old.weight)


# --- the paper's counts ---------------------------------------------------------------------

def test_params_at_the_paper_preset_official(capsys):
    assert main(["params", "--preset", "paper", "--protocol", "official", "--methods", "fft,adapter,lora-official,bitfit,iisan", "--json"]) == 0
    counts = {r["method"]: r["trainable_params"] for r in json.loads(capsys.readouterr().out)}
    assert counts == {"fft": 194_897_216, "adapter": 4_965_440, "lora-official": 833_600, "bitfit": 412_736, "iisan": 4_113_877}


# --- records, reports, compare --------------------------------------------------------------

def _record(proto: str | None) -> Record:
    d = {"schema": "tpme.result/2", "method": "fft", "status": "ok", "epoch_time_s": 1.0, "trainable_params": 10, "peak_memory_bytes": 100, "config": {"preset": "ci"}}
    if proto is not None:
        d["protocol"] = proto
    return Record.from_dict(d)


def test_record_names_its_protocol_and_old_records_read_as_tpme():
    assert _record(None).protocol == "tpme"
    rec = _record("official")
    assert rec.protocol == "official"
    assert Record.from_dict(rec.to_dict()).protocol == "official"


def test_compare_and_reports_flag_mixed_protocols():
    official, tpme = [_record("official")], [_record("tpme")]
    assert any("protocol" in m for m in mismatches(official, tpme))
    assert not any("protocol" in m for m in mismatches(tpme, [_record(None)]))
    records = official + tpme
    prov = collect(records, summarise(records, Weights.parse("paper")), ["x"])
    assert prov.protocols == ["official", "tpme"]
    assert any("mix protocols" in c for c in prov.cautions())


def test_cli_protocol_flag_reaches_the_config():
    from tpme.cli import build_parser
    from tpme.cli.common import scenario_config

    for argv in (["params", "--preset", "paper"], ["params", "--preset", "paper", "--protocol", "tpme"], ["estimate", "--protocol", "official", "--preset", "ci"]):
        args = build_parser().parse_args(argv)
        _, c = scenario_config(args)
        expected = argv[argv.index("--protocol") + 1] if "--protocol" in argv else "official"
        assert c.protocol == expected


def test_sweep_spec_sets_the_protocol_and_cells_take_the_official_batch(tmp_path):
    from tpme.sweep.spec import load_spec

    path = tmp_path / "p.yaml"
    path.write_text("preset: paper\nsettings:\n  protocol: official\naxes:\n  method: [fft, iisan]\n")
    cells = {c.method: c.config for c in load_spec(path).cells()}
    assert cells["fft"].protocol == cells["iisan"].protocol == "official"
    assert (cells["fft"].train.batch_size, cells["iisan"].train.batch_size) == (32, 64)
    path.write_text("preset: paper\nsettings:\n  protocol: tpme\naxes:\n  method: [iisan]\n")
    [cell] = load_spec(path).cells()
    assert (cell.config.protocol, cell.config.train.batch_size) == ("tpme", 32)


def test_official_step_runs_under_distributed_data_parallel(bundle):
    from torch.nn.parallel import DistributedDataParallel

    official = setup("bitfit", bundle, "official", eval=True)
    assert isinstance(official.trainer.model, DistributedDataParallel) and official.execution["ddp"]
    batch = next(official.loader.epoch(0))
    assert torch.isfinite(official.trainer.step(batch))
    assert torch.isfinite(official.trainer.step(next(official.loader.epoch(1))))  # the unused pooler bias is tolerated
    assert 0.0 <= official.evaluator.evaluate(official.trainer.model)["test"]["hr@10"] <= 1.0
    assert not isinstance(setup("bitfit", bundle, "tpme").trainer.model, DistributedDataParallel)


def test_official_cached_iisan_keeps_the_backbones_and_reads_state_files_not_a_cache(bundle, tmp_path):
    from tpme.scenarios.base import count_params

    torch.manual_seed(0)
    official = build_training(cfg("official"), get_method("iisan-cached"), bundle, CPU, str(tmp_path))
    plain = build_training(cfg("tpme"), get_method("iisan-cached"), bundle, CPU, str(tmp_path))
    kept = official.model.tower.kept_backbones
    assert kept is not None and not any(p.requires_grad for p in kept.parameters())
    trainable, total = count_params(official.model)
    assert trainable == count_params(plain.model)[0] and total > trainable + sum(p.numel() for p in kept.parameters()) - 1
    assert plain.model.tower.kept_backbones is None
    assert official.model.tower.text_cache.shape[0] == 0 and official.model.tower.state_source is not None  # tests/test_official_cache.py
    official.model.train()
    assert not kept.training
    assert torch.isfinite(official.trainer.step(next(official.loader.epoch(0))))


def test_popularity_baseline_under_both_evaluation_protocols(bundle):
    from tpme.scenarios.recommendation.evaluate import popularity_baseline

    details = popularity_baseline(bundle).details
    official = details["official_masking"]
    assert official["test"]["users"] == details["test"]["users"]
    assert official["masking"] != details["masking"]
    assert all(0.0 <= official[split][m] <= 1.0 for split in ("valid", "test") for m in ("hr@10", "ndcg@10"))


# --- DistributedDataParallel's buckets in the estimate --------------------------------------------

@pytest.mark.parametrize("method", ["fft", "bitfit", "iisan"])
def test_estimate_counts_the_gradient_buckets_ddp_builds(bundle, method):
    """The official run's DDP rebuilds its buckets after the first iterations; the estimate's
    steady-state buckets have the same sizes, and count in the estimate's gradients under
    `official` only."""
    from tpme.estimate.ddp import bucket_sizes
    from tpme.estimate.estimator import estimate_step

    s = setup(method, bundle, "official")
    batches = s.loader.epoch(0)
    for _ in range(4):
        s.trainer.step(next(batches))
    log = s.trainer.model._get_ddp_logging_data()
    unused = method == "bitfit"  # DDP never rebuilds buckets that look for unused parameters
    assert log["has_rebuilt_buckets"] == (0 if unused else 1)
    trainable = [p for p in s.model.parameters() if p.requires_grad]
    expected = [n * torch.empty(0, dtype=dtype).element_size() for dtype, n in bucket_sizes(trainable, unused)]
    assert [int(x) for x in str(log["bucket_sizes" if unused else "rebuilt_bucket_sizes"]).split(",")] == expected

    scenario = get_scenario("recommendation")
    for proto, buckets in (("official", sum(expected)), ("tpme", 0)):
        c = scenario.config_for_method(cfg(proto), method)
        est = estimate_step(scenario, c, get_method(method), scenario.data_shape(c), target="cpu")
        assert est.gradient_bucket_bytes == buckets
        assert est.memory.breakdown["gradients"] >= buckets


@pytest.mark.parametrize("unused", [False, True])
def test_bucket_split_matches_ddp_on_a_model_of_several_buckets(unused):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from tpme.estimate.ddp import bucket_sizes

    if not dist.is_initialized():
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    model = torch.nn.Sequential(*[torch.nn.Linear(512, 512) for _ in range(12)])  # 12.6 MB: a first bucket of about 1 MiB and one more
    wrapped = DistributedDataParallel(model, find_unused_parameters=unused)
    for _ in range(3):
        wrapped(torch.randn(4, 512)).sum().backward()
    log = wrapped._get_ddp_logging_data()
    built = log["bucket_sizes" if unused else "rebuilt_bucket_sizes"]
    expected = [4 * n for _, n in bucket_sizes(list(model.parameters()), unused)]
    assert len(expected) == 2 and [int(x) for x in str(built).split(",")] == expected
