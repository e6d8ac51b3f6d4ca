"""Tests of duda_engine.models: presets, heads, the Segmentor and pretrained-weight loading (CPU, small inputs)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from duda_engine.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DAFormerHead,
    DeepLabV2Head,
    PretrainedWeightsError,
    SegFormerHead,
    Segmentor,
    UnknownPresetError,
    build_head,
    build_segmentor,
    count_parameters,
    create_encoder,
    get_preset,
    load_pretrained_encoder,
    preset_names,
)

REQUIRED_PRESETS = {
    "mit_b5", "resnet101", "lite2", "mit_b0", "mit_b1", "mit_b2", "resnet18", "resnet50", "mobilenetv3",
    "lite0", "lite1", "mobilenetv2",
}  # fmt: skip


@pytest.fixture(scope="module")
def built() -> Callable[[str], Segmentor]:
    """Each preset built once (19 classes, eval mode) for the whole module: the heavy ones take seconds."""
    cache: dict[str, Segmentor] = {}

    def get(name: str) -> Segmentor:
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = build_segmentor(name, num_classes=19).eval()
        return cache[name]

    return get


@pytest.fixture(scope="module")
def mit_b5(built: Callable[[str], Segmentor]) -> Segmentor:
    return built("mit_b5")


def _images(batch: int = 1, height: int = 64, width: int = 64) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------------------------------
# presets


def test_required_presets_exist_with_their_heavy_flags():
    assert set(preset_names()) >= REQUIRED_PRESETS
    assert preset_names() == sorted(preset_names())
    assert get_preset("mit_b5").heavy and get_preset("resnet101").heavy and get_preset("lite2").heavy
    for name in ("mit_b0", "mit_b1", "mit_b2", "resnet18", "resnet50", "mobilenetv3", "lite0", "lite1", "mobilenetv2"):
        assert not get_preset(name).heavy, name


def test_presets_pair_the_documented_encoders_and_heads():
    expected = {
        "mit_b5": ("pvt_v2_b5", "daformer", 256),
        "mit_b0": ("pvt_v2_b0", "segformer", 256),
        "mit_b1": ("pvt_v2_b1", "segformer", 256),
        "mit_b2": ("pvt_v2_b2", "segformer", 768),
        "resnet101": ("resnet101", "deeplabv2", 0),
        "resnet50": ("resnet50", "deeplabv2", 0),
        "resnet18": ("resnet18", "deeplabv2", 0),
        "lite2": ("tf_efficientnet_lite2", "daformer", 256),
        "lite0": ("tf_efficientnet_lite0", "segformer", 128),
        "lite1": ("tf_efficientnet_lite1", "segformer", 128),
        "mobilenetv2": ("mobilenetv2_100", "segformer", 128),
    }
    for name, (encoder, head, width) in expected.items():
        preset = get_preset(name)
        assert (preset.encoder, preset.head, preset.head_width) == (encoder, head, width), name
    for name in ("resnet18", "resnet50", "resnet101"):
        assert get_preset(name).output_stride == 8


def test_unknown_preset_error_lists_the_known_names():
    with pytest.raises(UnknownPresetError) as caught:
        get_preset("mit_b9")
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert "mit_b9" in message
    for name in preset_names():
        assert name in message
    with pytest.raises(UnknownPresetError):
        build_segmentor("not_a_model", num_classes=19)


def test_fewer_than_two_classes_is_rejected():
    with pytest.raises(ValueError, match="num_classes"):
        build_segmentor("mobilenetv3", num_classes=1)


# ---------------------------------------------------------------------------------------------------------
# forward: shapes, features, normalisation


@pytest.mark.parametrize("num_classes", [19, 5])
@pytest.mark.parametrize("name", preset_names())
def test_logits_at_input_resolution_for_every_preset(built: Callable[[str], Segmentor], name: str, num_classes: int):
    seg = built(name)
    if num_classes != seg.num_classes:  # same encoder, a fresh head of the preset's kind (building is the slow part)
        preset = get_preset(name)
        head = build_head(preset.head, seg.encoder.feature_info.channels(), num_classes, preset.head_width)
        seg = Segmentor(name, seg.encoder, head, num_classes).eval()
    assert (seg.preset, seg.num_classes) == (name, num_classes)
    with torch.no_grad():
        logits, features = seg.forward_with_features(_images())
    assert logits.shape == (1, num_classes, 64, 64)
    assert torch.isfinite(logits).all()
    assert [f.shape[1] for f in features] == seg.encoder.feature_info.channels()
    assert len(features) == len(get_preset(name).out_indices)


def test_build_segmentor_with_any_number_of_classes():
    for num_classes in (2, 5, 151):
        seg = build_segmentor("mobilenetv3", num_classes=num_classes).eval()
        assert seg.num_classes == num_classes
        with torch.no_grad():
            assert seg(_images()).shape == (1, num_classes, 64, 64)


def test_mit_b5_features_and_head(mit_b5: Segmentor):
    with torch.no_grad():
        _, features = mit_b5.forward_with_features(_images())
    assert [tuple(f.shape[1:]) for f in features] == [(64, 16, 16), (128, 8, 8), (320, 4, 4), (512, 2, 2)]
    assert isinstance(mit_b5.decoder, DAFormerHead)


@pytest.mark.parametrize("name", ["mit_b0", "resnet18", "mobilenetv3", "mit_b5"])
def test_odd_input_size_gives_logits_of_that_size(built: Callable[[str], Segmentor], name: str):
    with torch.no_grad():
        assert built(name)(_images(2, 72, 40)).shape == (2, 19, 72, 40)


@pytest.mark.parametrize(
    ("name", "mean", "std"), [("mit_b0", IMAGENET_MEAN, IMAGENET_STD), ("lite0", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
)
def test_normalisation_happens_inside_the_model(built: Callable[[str], Segmentor], name: str, mean, std):
    seg = built(name)
    mean = torch.tensor(mean).view(1, 3, 1, 1)
    std = torch.tensor(std).view(1, 3, 1, 1)
    assert torch.equal(seg.mean, mean) and torch.equal(seg.std, std)
    assert "mean" not in seg.state_dict() and "std" not in seg.state_dict()  # non-persistent buffers

    images = _images(2)
    with torch.no_grad():
        by_hand = seg.decoder(list(seg.encoder((images - mean) / std)))
        by_hand = F.interpolate(by_hand, size=(64, 64), mode="bilinear", align_corners=False)
        assert torch.allclose(seg(images), by_hand, atol=1e-5)
        assert not torch.allclose(seg((images - mean) / std), by_hand, atol=1e-3)


def test_images_without_three_channels_are_rejected():
    seg = build_segmentor("mobilenetv3", num_classes=3)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        seg(torch.rand(1, 1, 32, 32))


# ---------------------------------------------------------------------------------------------------------
# training: parameter groups and gradients


def _assert_groups_cover_each_trainable_parameter_once(seg: Segmentor) -> None:
    groups = seg.param_groups(lr=6e-5, head_lr_mult=10.0)
    assert [g["name"] for g in groups] == ["encoder", "decoder"]
    assert groups[0]["lr"] == pytest.approx(6e-5) and groups[1]["lr"] == pytest.approx(6e-4)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in seg.parameters() if p.requires_grad}
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in seg.decoder.parameters()}


def test_param_groups_cover_every_trainable_parameter_once(mit_b5: Segmentor):
    _assert_groups_cover_each_trainable_parameter_once(mit_b5)
    seg = build_segmentor("resnet18", num_classes=19)
    _assert_groups_cover_each_trainable_parameter_once(seg)
    seg.encoder.conv1.weight.requires_grad_(False)
    _assert_groups_cover_each_trainable_parameter_once(seg)
    assert all(p is not seg.encoder.conv1.weight for p in seg.param_groups(1e-3, 10.0)[0]["params"])
    torch.optim.AdamW(seg.param_groups(6e-5, 10.0), weight_decay=0.01)  # the groups are valid for AdamW


@pytest.mark.parametrize("name", ["mit_b0", "resnet18"])
def test_gradient_reaches_encoder_and_head(name: str):
    torch.manual_seed(0)
    seg = build_segmentor(name, num_classes=5).train()
    labels = torch.randint(0, 5, (2, 64, 64))
    loss = F.cross_entropy(seg(_images(2)), labels)
    loss.backward()
    first_encoder_param = next(seg.encoder.parameters())
    last_head_param = list(seg.decoder.parameters())[-1]
    assert first_encoder_param.grad is not None and first_encoder_param.grad.abs().sum() > 0
    assert last_head_param.grad is not None and last_head_param.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------
# heads


def test_daformer_head_structure_and_init():
    head = DAFormerHead([32, 64, 160, 256], num_classes=19, width=256)
    assert head.branches[0][0].kernel_size == (1, 1)
    assert [b[0][0].dilation for b in head.branches[1:]] == [(6, 6), (12, 12), (18, 18)]
    assert all(b[0][0].groups == 1024 for b in head.branches[1:])  # depthwise
    assert head.bottleneck[0].kernel_size == (3, 3) and head.bottleneck[0].in_channels == 4 * 256
    assert head.dropout.p == pytest.approx(0.1)
    bns = [m for m in head.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(bn.weight == 1) and torch.all(bn.bias == 0) for bn in bns)
    assert head.classifier.weight.std() < 0.02 and torch.all(head.classifier.bias == 0)
    features = [torch.rand(1, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate([32, 64, 160, 256])]
    assert head.eval()(features).shape == (1, 19, 16, 16)


def test_segformer_and_deeplabv2_heads():
    features = [torch.rand(1, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate([32, 64, 160, 256])]
    segformer = SegFormerHead([32, 64, 160, 256], num_classes=4, width=64).eval()
    assert segformer.fuse[0].kernel_size == (1, 1) and segformer.fuse[0].in_channels == 4 * 64
    assert segformer(features).shape == (1, 4, 16, 16)
    deeplab = DeepLabV2Head([32, 64, 160, 256], num_classes=4)
    assert [b.dilation for b in deeplab.branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    out = deeplab(features)
    assert out.shape == (1, 4, 2, 2)
    assert torch.allclose(out, sum(b(features[-1]) for b in deeplab.branches), atol=1e-6)
    with pytest.raises(ValueError, match="unknown head kind"):
        build_head("fcn", [8], num_classes=3, width=8)


def test_count_parameters():
    seg = build_segmentor("mobilenetv3", num_classes=19)
    assert count_parameters(seg) == sum(p.numel() for p in seg.parameters())
    seg.encoder.requires_grad_(False)
    assert count_parameters(seg, trainable_only=True) == count_parameters(seg.decoder)


# ---------------------------------------------------------------------------------------------------------
# pretrained weights


def _assert_same_tensors(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_load_state_dict_with_backbone_prefix(tmp_path):
    source = create_encoder(get_preset("resnet18"))
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in source.state_dict().items()}}, path)

    fresh = create_encoder(get_preset("resnet18"))
    report = load_pretrained_encoder(fresh, str(path))
    _assert_same_tensors(fresh, source)
    assert report.matched == len(source.state_dict())


def test_load_a_full_timm_checkpoint_with_its_classifier(tmp_path):
    """An ImageNet checkpoint of the whole timm model (``stages.0``, ``head.``) into the features_only
    encoder (``stages_0``), wrapped as {"model": ...} with a "module." prefix."""
    full = timm.create_model("pvt_v2_b0", pretrained=False)
    path = tmp_path / "pvt_v2_b0.pth"
    torch.save({"model": {f"module.{k}": v for k, v in full.state_dict().items()}, "epoch": 3}, path)

    encoder = create_encoder(get_preset("mit_b0"))
    load_pretrained_encoder(encoder, path)
    assert torch.equal(
        encoder.state_dict()["stages_3.blocks.1.mlp.fc2.weight"], full.stages[3].blocks[1].mlp.fc2.weight
    )
    assert torch.equal(encoder.state_dict()["patch_embed.proj.weight"], full.patch_embed.proj.weight)


def _to_original_mit_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm pvt_v2 names → SegFormer's original MiT names (the inverse of what the loader does)."""
    out = {}
    for key, value in state.items():
        new = key.replace("patch_embed.", "patch_embed1.")
        new = re.sub(r"^stages\.(\d)\.downsample\.", lambda m: f"patch_embed{int(m.group(1)) + 1}.", new)
        new = re.sub(r"^stages\.(\d)\.blocks\.(\d+)\.", lambda m: f"block{int(m.group(1)) + 1}.{m.group(2)}.", new)
        new = re.sub(r"^stages\.(\d)\.norm\.", lambda m: f"norm{int(m.group(1)) + 1}.", new)
        out[new.replace(".dwconv.", ".dwconv.dwconv.")] = value
    return out


def test_load_original_segformer_mit_checkpoint(tmp_path):
    full = timm.create_model("pvt_v2_b0", pretrained=False)
    path = tmp_path / "mit_b0.pth"
    torch.save(_to_original_mit_names(full.state_dict()), path)

    seg = build_segmentor("mit_b0", num_classes=19, pretrained=str(path))
    assert torch.equal(
        seg.encoder.state_dict()["stages_1.downsample.proj.weight"], full.stages[1].downsample.proj.weight
    )
    assert torch.equal(
        seg.encoder.state_dict()["stages_2.blocks.0.mlp.dwconv.weight"], full.stages[2].blocks[0].mlp.dwconv.weight
    )


def test_load_safetensors(tmp_path):
    from safetensors.torch import save_file

    source = create_encoder(get_preset("mobilenetv3"))
    path = tmp_path / "mnv3.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    fresh = create_encoder(get_preset("mobilenetv3"))
    load_pretrained_encoder(fresh, path)
    _assert_same_tensors(fresh, source)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(PretrainedWeightsError, match="not found") as caught:
        build_segmentor("mit_b0", num_classes=19, pretrained=str(path))
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_unreadable_file(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="could not read"):
        load_pretrained_encoder(create_encoder(get_preset("mobilenetv3")), path)


def test_file_with_wrong_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"stem.weight": torch.zeros(3), "blocks.0.weight": torch.zeros(3)}, path)
    with pytest.raises(PretrainedWeightsError) as caught:
        load_pretrained_encoder(create_encoder(get_preset("resnet18")), path)
    message = str(caught.value)
    assert "0 of" in message and "missing" in message and "2 unexpected" in message
    assert "stem.weight" in message and "conv1.weight" in message


def test_weights_of_another_size_of_the_same_family(tmp_path):
    path = tmp_path / "b0.pth"
    torch.save(create_encoder(get_preset("mit_b0")).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match="wrong shape"):
        load_pretrained_encoder(create_encoder(get_preset("mit_b1")), path)
