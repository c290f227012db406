"""Every method trains exactly its intended parameters and leaves frozen weights bit-identical."""
from __future__ import annotations

import loralib
import numpy as np
import pytest
import torch

from tpme.datasets.batching import IMAGE, TEXT, ItemBatch, ItemFeatures, TrainLoader
from tpme.datasets.bundle import DataBundle
from tpme.errors import TpmeError
from tpme.methods.registry import PrepareContext, get_method
from tpme.models.backbones import Backbones, BackboneSpec
from tpme.scenarios.recommendation.model import Recommender

EMBED = 16


def _backbone(name: str) -> bool:
    return name.startswith(("tower.text.", "tower.image."))


# method -> (options, predicate over full parameter names: True where the parameter must train)
INTENDED = {
    "fft": ({}, lambda n: True),
    "frozen": ({}, lambda n: not _backbone(n)),
    "adapter": ({"bottleneck": "8"}, lambda n: not _backbone(n) or ".adapter." in n),
    "lora": ({}, lambda n: not _backbone(n) or ".lora_" in n),
    "lora-loralib": ({}, lambda n: not _backbone(n) or n.endswith((".lora_A", ".lora_B"))),
    "bitfit": ({}, lambda n: not _backbone(n) or n.endswith("bias")),
    "iisan": ({}, lambda n: not _backbone(n)),
    "iisan-cached": ({}, lambda n: True),
    "peft:ia3": ({}, lambda n: not _backbone(n) or ".ia3_l." in n),
    "peft:loha": ({"r": "4"}, lambda n: not _backbone(n) or ".hada_" in n),
}
ADAPTS_BACKBONE = {"fft", "adapter", "lora", "lora-loralib", "bitfit", "peft:ia3", "peft:loha"}


@pytest.fixture(scope="module")
def bundle(ci_bundle_path) -> DataBundle:
    return DataBundle.load(ci_bundle_path)


def build(method_name: str, options: dict, bundle: DataBundle, cache_dir, seed: int = 0):
    torch.manual_seed(seed)
    backbones = Backbones.build(BackboneSpec.parse("tiny"))
    pristine = [(p, p.detach().clone()) for m in (backbones.text, backbones.image) for p in m.parameters()]
    method = get_method(method_name, options)
    tower = method.build_tower(backbones, EMBED)
    model = Recommender(tower, EMBED, bundle.max_seq_len)
    pad = int(bundle.info["pad_id"])
    ctx = PrepareContext(backbones, bundle, ItemFeatures(bundle, frozenset({TEXT, IMAGE}), backbones.image_size, pad), torch.device("cpu"), "fp32", str(cache_dir))
    return method, backbones, tower, model, ctx, pristine


@pytest.mark.parametrize("name", list(INTENDED))
def test_only_intended_parameters_train_and_frozen_weights_stay(name, bundle, tmp_path):
    options, intended = INTENDED[name]
    method, backbones, tower, model, ctx, pristine = build(name, options, bundle, tmp_path)
    method.prepare(tower, ctx)
    named = dict(model.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable == {n for n in named if intended(n)}
    if name in ADAPTS_BACKBONE:
        assert any(_backbone(n) for n in trainable), "the method trains nothing inside the backbones"
    frozen_before = {n: p.detach().clone() for n, p in named.items() if not p.requires_grad}

    opt = torch.optim.Adam([named[n] for n in sorted(trainable)], lr=1e-2)
    loader = TrainLoader(bundle, ItemFeatures(bundle, tower.needs, backbones.image_size, int(bundle.info["pad_id"])), batch_size=4)
    batches = loader.forever()
    model.train()
    for step in range(3):
        model(next(batches)).backward()
        with_grad = {n for n, p in named.items() if p.grad is not None}
        assert with_grad == trainable, f"step {step}: grads on {sorted(with_grad ^ trainable)[:5]}"
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
    model.train()  # switching modes must not touch frozen weights (loralib would merge B·A on eval)

    for n, before in frozen_before.items():
        assert torch.equal(named[n].detach(), before), f"frozen {n} changed"
    for p, before in pristine:  # the backbones' own weights, wherever wrapping moved them
        if not p.requires_grad:
            assert torch.equal(p.detach(), before)


def test_wrapped_backbone_weights_are_the_pretrained_ones(bundle, tmp_path):
    """Adapter, lora and lora-loralib keep the pretrained projection weights (renamed by wrapping)."""
    torch.manual_seed(0)
    ref = Backbones.build(BackboneSpec.parse("tiny"))
    ref_q = ref.text.encoder.layer[0].attention.self.query.weight
    ref_o = ref.image.layers[1].mlp.fc2.weight
    for name in ("adapter", "lora", "lora-loralib"):
        _, backbones, tower, *_ = build(name, {}, bundle, tmp_path)
        text = tower.text.get_base_model() if hasattr(tower.text, "get_base_model") else tower.text
        image = tower.image.get_base_model() if hasattr(tower.image, "get_base_model") else tower.image
        q = text.encoder.layer[0].attention.self.query
        q_weight = q.base_layer.weight if hasattr(q, "base_layer") else q.weight
        fc2 = image.layers[1].mlp.fc2
        fc2_weight = fc2.base.weight if hasattr(fc2, "base") else (fc2.base_layer.weight if hasattr(fc2, "base_layer") else fc2.weight)
        assert torch.equal(q_weight, ref_q), name
        assert torch.equal(fc2_weight, ref_o), name


def test_adapter_wraps_projection_before_bert_residual_layernorm(bundle, tmp_path):
    _, _, tower, *_ = build("adapter", {}, bundle, tmp_path)
    from tpme.methods.adapter import AdaptedLinear

    layer = tower.text.encoder.layer[0]
    assert isinstance(layer.attention.output.dense, AdaptedLinear) and isinstance(layer.output.dense, AdaptedLinear)
    assert isinstance(layer.attention.output.LayerNorm, torch.nn.LayerNorm)
    vit = tower.image.layers[0]
    assert isinstance(vit.attention.o_proj, AdaptedLinear) and isinstance(vit.mlp.fc2, AdaptedLinear)
    assert not isinstance(vit.mlp.fc1, AdaptedLinear)
    assert layer.output.dense.adapter.down.out_features == 64


def test_lora_and_loralib_compute_the_same(bundle, tmp_path):
    _, _, peft_tower, *_ = build("lora", {}, bundle, tmp_path, seed=3)
    _, _, lib_tower, *_ = build("lora-loralib", {}, bundle, tmp_path, seed=3)
    g = torch.Generator().manual_seed(0)
    for which in ("text", "image"):
        peft_model, lib_model = getattr(peft_tower, which), getattr(lib_tower, which)
        base = peft_model.get_base_model()
        lib_layers = [(n, m) for n, m in lib_model.named_modules() if isinstance(m, loralib.Linear)]
        assert len(lib_layers) == 2 * 2  # query and value of both layers
        with torch.no_grad():
            for n, m in lib_layers:
                p = base.get_submodule(n)
                p.lora_B["default"].weight.copy_(torch.randn(p.lora_B["default"].weight.shape, generator=g) * 0.1)
                m.lora_A.copy_(p.lora_A["default"].weight)
                m.lora_B.copy_(p.lora_B["default"].weight)
    lib_tower.heads.load_state_dict(peft_tower.heads.state_dict())
    peft_tower.eval()
    lib_tower.eval()
    items = ItemFeatures(bundle, frozenset({TEXT, IMAGE}), 32, int(bundle.info["pad_id"])).gather(np.arange(1, 9)).to(torch.device("cpu"))
    with torch.no_grad():
        a, b = peft_tower(items), lib_tower(items)
    assert not torch.allclose(a, peft_tower.heads(*_frozen_cls(peft_tower, items)), atol=1e-4), "LoRA B was not made non-zero"
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _frozen_cls(tower, items: ItemBatch):
    with tower.text.disable_adapter(), tower.image.disable_adapter():
        return tower.encode(items)


def test_iisan_layer_schedule_and_sizes(bundle, tmp_path):
    from tpme.methods.iisan.options import IisanOptions, layer_schedule

    assert layer_schedule(12, 12, IisanOptions()) == ([0, 2, 4, 6, 8, 10, 12], [0, 2, 4, 6, 8, 10, 12])
    assert layer_schedule(2, 2, IisanOptions()) == ([0, 2], [0, 2])
    assert layer_schedule(6, 12, IisanOptions()) == ([0, 1, 2, 3, 4, 5, 6], [0, 2, 4, 6, 8, 10, 12])
    assert layer_schedule(4, 4, IisanOptions(layers=(1, 4))) == ([1, 4], [1, 4])
    _, _, tower, *_ = build("iisan", {"bottleneck": "8"}, bundle, tmp_path)
    assert tower.side.steps == 2 and tower.side.sans[0].down_weight.shape == (2, 3, 64, 8)  # steps, networks, d, bottleneck
    assert torch.allclose(torch.sigmoid(tower.side.gate_theta / 0.1), torch.full((3, 2), 0.5))
    tower.train()
    assert not tower.text.training and not tower.image.training and tower.side.training


def test_cached_and_uncached_iisan_give_the_same_embeddings(bundle, tmp_path):
    _, backbones, uncached, *_ = build("iisan", {}, bundle, tmp_path)
    cached_method = get_method("iisan-cached", {"cache_dtype": "fp32", "cache_batch_size": "16"})
    cached = cached_method.build_tower(backbones, EMBED)
    cached.side.load_state_dict(uncached.side.state_dict())
    pad = int(bundle.info["pad_id"])
    info = cached_method.prepare(cached, PrepareContext(backbones, bundle, ItemFeatures(bundle, frozenset({TEXT, IMAGE}), 32, pad), torch.device("cpu"), "fp32", str(tmp_path)))
    assert info["cache"] == "built" and info["build_time_s"] > 0 and info["items_per_s"] > 0
    assert info["shapes"]["text"] == [bundle.n_items + 1, 2, 64]
    assert {n for n, _ in cached.named_buffers()} == {"text_cache", "image_cache"}
    assert "text_cache" not in cached.state_dict()  # non-persistent
    ids = np.arange(1, bundle.n_items + 1)
    uncached.eval()
    cached.eval()
    with torch.no_grad():
        a = uncached(ItemFeatures(bundle, frozenset({TEXT, IMAGE}), 32, pad).gather(ids).to(torch.device("cpu")))
        b = cached(ItemBatch(torch.from_numpy(ids)))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("adapter", {"bottleneck": "0"}, "bottleneck"),
        ("adapter", {"bottleneck": "x"}, "not a valid int"),
        ("lora", {"r": "0"}, "rank"),
        ("lora-loralib", {"dropout": "1.5"}, "dropout"),
        ("lora", {"rank": "8"}, "no option"),
        ("iisan", {"stride": "0"}, "stride"),
        ("iisan", {"layers": "4,2"}, "increasing"),
        ("iisan-cached", {"cache_dtype": "int8"}, "cache dtype"),
        ("bitfit", {"x": "1"}, "no option"),
        ("peft:nosuchmethod", {}, "peft has no method type"),
        ("peft:prompt_tuning", {}, "prompt-learning"),
        ("peft:xlora", {}, "cannot adapt"),
        ("peft:lora", {"r": "eight"}, "not a valid int"),
        ("peft:lora", {"target_modules": "query"}, "no option"),
        ("peft:lora", {"bias": "some"}, "not one of none, all, lora_only"),
    ],
)
def test_bad_options_give_tpme_errors(name, options, message, bundle, tmp_path):
    with pytest.raises(TpmeError, match=message):
        method = get_method(name, options)
        method.build_tower(Backbones.build(BackboneSpec.parse("tiny")), EMBED)


def test_iisan_layers_beyond_the_backbone_are_refused():
    with pytest.raises(TpmeError, match="outside"):
        get_method("iisan", {"layers": "0,5"}).build_tower(Backbones.build(BackboneSpec.parse("tiny")), EMBED)


def test_peft_family_options_reach_the_config(bundle, tmp_path):
    method = get_method("peft:lora", {"r": "2", "lora_dropout": "0.0", "image_targets": "q_proj"})
    tower = method.build_tower(Backbones.build(BackboneSpec.parse("tiny")), EMBED)
    assert tower.text.peft_config["default"].r == 2
    image_lora = [n for n, _ in tower.image.named_parameters() if "lora_A" in n]
    assert image_lora and all("q_proj" in n for n in image_lora)
    with pytest.raises(TpmeError, match="cannot be applied|adds no trainable"):
        get_method("peft:adaption_prompt").build_tower(Backbones.build(BackboneSpec.parse("tiny")), EMBED)


def test_iisan_with_different_text_and_image_backbones():
    """Hidden sizes 64 (text) vs 256 (image) and depths 2 vs 4: proportional schedule, text mapped into the inter width."""
    torch.manual_seed(0)
    backbones = Backbones.build(BackboneSpec.parse("tiny,small"))
    tower = get_method("iisan").build_tower(backbones, EMBED)
    assert (tower.text_layers, tower.image_layers) == ([0, 1, 2], [0, 2, 4])
    assert isinstance(tower.side.text_to_inter, torch.nn.Linear)
    assert [san.down_weight.shape[1:3] for san in tower.side.sans] == [(1, 64), (2, 256)]  # text alone; image + inter at 256
    items = ItemBatch(torch.arange(1, 4), torch.randint(5, 100, (3, 8)), torch.ones(3, 8, dtype=torch.long), torch.randn(3, 3, 64, 64))
    assert tower(items).shape == (3, EMBED)
    assert isinstance(get_method("iisan").build_tower(Backbones.build(BackboneSpec.parse("tiny")), EMBED).side.text_to_inter, torch.nn.Identity)


def test_iisan_cls_states_equal_the_models_hidden_states():
    """The hook-based [CLS] capture reads exactly hidden_states[l][:, 0] of both backbones."""
    from tpme.methods.iisan.towers import cls_states
    from tpme.models.backbones import Backbones, BackboneSpec

    torch.manual_seed(0)
    bb = Backbones.build(BackboneSpec.parse("tiny"))
    bb.text.eval()
    bb.image.eval()
    ids = torch.randint(5, 200, (3, 12))
    mask = torch.ones_like(ids)
    pixels = torch.randn(3, 3, 32, 32)
    for model, inputs in ((bb.text, {"input_ids": ids, "attention_mask": mask}), (bb.image, {"pixel_values": pixels})):
        with torch.no_grad():
            hidden = model(**inputs, output_hidden_states=True).hidden_states
        got = cls_states(model, [0, 1, 2], **inputs)
        for k, l in enumerate([0, 1, 2]):
            assert torch.equal(got[:, k], hidden[l][:, 0])


def _reference_side(side, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """DESIGN section 3 written out network by network, block by block, on side's weights."""
    groups = [(0, 0), (0, 1), (0, 2)] if side.shared else [(0, 0), (1, 0), (1, 1)]  # (stack, row) of t, v, m
    gates = torch.sigmoid(side.gate_theta / 0.1)
    n = text.shape[0]
    s = [torch.zeros(n, side.sans[g].down_weight.shape[2]) for g, _ in groups]

    def san(net: int, k: int, x: torch.Tensor) -> torch.Tensor:
        g, r = groups[net]
        p = side.sans[g]
        return x + (torch.relu(x @ p.down_weight[k, r] + p.down_bias[k, r, 0]) @ p.up_weight[k, r] + p.up_bias[k, r, 0])

    for k in range(side.steps):
        h_t, h_v = text[:, k], image[:, k]
        g_t, g_v, g_m = gates[:, k]
        s[0] = san(0, k, g_t * h_t + (1 - g_t) * s[0])
        s[1] = san(1, k, g_v * h_v + (1 - g_v) * s[1])
        s[2] = san(2, k, s[2] + g_m * h_v + (1 - g_m) * side.text_to_inter(h_t))
    outs = []
    for net in range(3):
        g, r = groups[net]
        head = side.heads[g]
        outs.append((s[net] @ head.hidden_weight[r] + head.hidden_bias[r, 0]) @ head.out_weight[r] + head.out_bias[r, 0])
    return side.fuse(torch.cat(outs, dim=-1))


@pytest.mark.parametrize("text_dim,image_dim", [(32, 32), (24, 32)])
def test_stacked_side_networks_compute_the_design_formulas(text_dim, image_dim):
    from tpme.methods.iisan.side import SideNetworks

    torch.manual_seed(0)
    side = SideNetworks(text_dim, image_dim, steps=3, bottleneck=8, embed_dim=16)
    with torch.no_grad():
        side.gate_theta.normal_(0, 0.2)  # gates away from 0.5, so swapped gate rows would show
    text, image = torch.randn(5, 3, text_dim), torch.randn(5, 3, image_dim)
    torch.testing.assert_close(side(text, image), _reference_side(side, text, image), rtol=1e-5, atol=1e-5)
    per_block = 2 * 8 * image_dim + 8 + image_dim  # d -> b -> d with biases
    design = 3 * 3 * per_block if text_dim == image_dim else 3 * (2 * 8 * text_dim + 8 + text_dim) + 2 * 3 * per_block
    assert sum(p.numel() for san in side.sans for p in san.parameters()) == design
