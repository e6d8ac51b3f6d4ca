import itertools
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from duda_engine.methods.augment import block_mask, classmix_masks, color_jitter, mix
from duda_engine.methods.common import update_batchnorm_statistics
from duda_engine.methods.duda import fuse
from duda_engine.methods.ema import ema_alpha, make_ema_teacher, update_ema
from duda_engine.methods.inconsistency import InconsistencyWeights
from duda_engine.methods.losses import cross_entropy, distillation_loss, feature_distance
from duda_engine.methods.pseudo_labels import pseudo_label
from duda_engine.methods.schedules import kd_weight, lr_factor, ramp


def test_classmix_pastes_half_of_each_images_classes():
    labels = torch.tensor([[[0, 1, 2, 3], [0, 1, 2, 255]]])
    mask = classmix_masks(labels, 255, torch.Generator().manual_seed(0))
    chosen = torch.unique(labels[mask[:, 0].bool()])
    assert len(chosen) == 2  # half of {0,1,2,3}
    # whole classes are pasted: every pixel of a chosen class, none of the others, never ignore
    for c in range(4):
        assert bool(mask[0, 0][labels[0] == c].all()) == (c in chosen.tolist())
    assert mask[0, 0][labels[0] == 255].sum() == 0
    mixed = mix(mask, labels, torch.full_like(labels, 9))
    assert torch.equal(mixed, torch.where(mask[:, 0].bool(), labels, 9))


@pytest.mark.parametrize("present", [[0, 1, 2, 3], [2, 5, 7], [4]])
def test_classmix_picks_half_of_the_present_classes_with_equal_odds(present):
    """ceil(n/2) of the n present classes, whole, every such subset as likely."""
    labels = torch.full((1, 6, 8), 255)
    for i, c in enumerate(present):
        labels[0, i] = c
    subsets = Counter()
    generator = torch.Generator().manual_seed(0)
    for _ in range(1500):
        masks = classmix_masks(labels, 255, generator)
        chosen = torch.unique(labels[masks[:, 0].bool()])
        assert len(chosen) == (len(present) + 1) // 2 and set(chosen.tolist()) <= set(present)
        for c in present:  # whole classes: every pixel of a chosen class, none of the others
            assert bool(masks[0, 0][labels[0] == c].all()) == (c in chosen.tolist())
        subsets[tuple(chosen.tolist())] += 1
    # Every subset of ceil(n/2) present classes, each as often (not just each class as often).
    possible = list(itertools.combinations(present, (len(present) + 1) // 2))
    assert sorted(subsets) == sorted(possible)
    assert all(abs(subsets[subset] - 1500 / len(possible)) < 0.25 * 1500 / len(possible) + 5 for subset in possible), subsets
    no_classes = torch.stack([labels[0], torch.full((6, 8), 255)])  # an image without classes too
    assert classmix_masks(no_classes, 255, torch.Generator().manual_seed(3))[1].sum() == 0


def test_inconsistency_update_equals_the_boolean_indexing_formulation():
    """The sync-free update gives bit-identical weights to the straightforward one it replaced."""

    def reference_update(disagreement, prediction, pseudo, k, momentum):
        valid = pseudo != 255
        matrix = torch.bincount(pseudo[valid] * k + prediction[valid], minlength=k * k).reshape(k, k).float()
        intersection = matrix.diag()
        union = matrix.sum(0) + matrix.sum(1) - intersection
        present = union > 0
        observed = 1.0 - intersection[present] / union[present]
        disagreement[present] = momentum * disagreement[present] + (1 - momentum) * observed

    weights, reference = InconsistencyWeights(19, 1.0, 0.99, (0.5, 3.0)), torch.ones(19)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        prediction = torch.randint(0, 12, (2, 16, 16), generator=generator)
        pseudo = torch.randint(0, 14, (2, 16, 16), generator=generator)
        pseudo[pseudo == 13] = 255
        weights.update(prediction, pseudo, 255)
        reference_update(reference, prediction, pseudo, 19, 0.99)
    assert torch.equal(weights.disagreement, reference)
    assert not torch.equal(reference, torch.ones(19)) and torch.equal(reference[14:], torch.ones(5))  # absent: kept


def test_ema_follows_the_student():
    student = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    teacher = make_ema_teacher(student)
    assert not any(p.requires_grad for p in teacher.parameters())
    before = teacher[0].weight.clone()
    with torch.no_grad():
        student[0].weight.add_(1.0)
    update_ema(teacher, student, 0.9)
    assert torch.allclose(teacher[0].weight, 0.9 * before + 0.1 * student[0].weight)
    assert ema_alpha(0, 0.999) == 0.0 and ema_alpha(9, 0.999) == pytest.approx(0.9) and ema_alpha(10**6, 0.999) == 0.999
    update_ema(teacher, student, ema_alpha(0, 0.999))
    assert torch.equal(teacher[0].weight, student[0].weight)


def test_pseudo_label_weight_is_the_confident_share():
    probs = torch.tensor([[[[0.99, 0.6], [0.97, 0.2]], [[0.01, 0.4], [0.03, 0.8]]]])  # [1,2,2,2]
    labels, weights = pseudo_label(probs, threshold=0.968)
    assert labels.tolist() == [[[0, 0], [0, 1]]]
    assert torch.allclose(weights, torch.full((1, 2, 2), 0.5))  # 2 of 4 pixels are >= 0.968
    _, cut = pseudo_label(probs, 0.968, ignore_top=1)
    assert cut[0, 0].tolist() == [0, 0] and cut[0, 1].tolist() == [0.5, 0.5]


def test_kd_loss_by_hand():
    student = torch.tensor([[[[2.0]], [[0.0]]]])  # [1,2,1,1] logits
    teacher_logits = torch.tensor([0.0, 2.0])
    temperature = 2.0
    p = torch.softmax(teacher_logits / temperature, 0)
    q = torch.softmax(torch.tensor([2.0, 0.0]) / temperature, 0)
    expected = temperature**2 * float((p * (p.log() - q.log())).sum())  # KL(teacher || student)
    loss = distillation_loss(student, p.view(1, 2, 1, 1), temperature)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    reverse = temperature**2 * float((q * (q.log() - p.log())).sum())
    assert loss.item() != pytest.approx(reverse, rel=1e-3) or expected == pytest.approx(reverse)


def test_weighted_cross_entropy_ignores_and_weights():
    logits = torch.randn(1, 3, 2, 2)
    labels = torch.tensor([[[0, 1], [2, 255]]])
    plain = F.cross_entropy(logits, labels, ignore_index=255)
    assert cross_entropy(logits, labels, 255).item() == pytest.approx(plain.item(), rel=1e-6)
    assert cross_entropy(logits, labels, 255, torch.full((1, 2, 2), 0.5)).item() == pytest.approx(plain.item() / 2, rel=1e-6)


def test_inconsistency_weights_favour_the_disagreeing_class():
    weights = InconsistencyWeights(3, gamma=1.0, momentum=0.0, clip=(0.1, 10.0))
    pseudo = torch.tensor([[0, 0, 1, 1, 2, 2]])
    prediction = torch.tensor([[0, 0, 1, 1, 0, 1]])  # class 2 never predicted: full disagreement
    weights.update(prediction, pseudo, 255)
    w = weights.weights()
    assert int(w.argmax()) == 2
    assert w.mean().item() == pytest.approx(1.0)
    clipped = InconsistencyWeights(3, 1.0, 0.0, (0.5, 1.5))
    clipped.update(prediction, pseudo, 255)
    assert clipped.weights().mean().item() == pytest.approx(1.0)


def test_inconsistency_weights_per_pixel_scale_the_loss():
    weights = InconsistencyWeights(3, gamma=1.0, momentum=0.0, clip=(0.1, 10.0))
    weights.update(torch.tensor([[0, 0, 0, 1, 1, 1]]), torch.tensor([[0, 0, 0, 1, 2, 2]]), 255)
    c = weights.weights()  # u = (0, 2/3, 1): c = 3u / (5/3) = (0, 1.2, 1.8), clipped to 0.1, mean 1 again
    assert torch.allclose(c, torch.tensor([0.1, 1.2, 1.8]) / (3.1 / 3))
    labels = torch.tensor([[0, 0, 0, 0, 1, 255], [2, 2, 0, 0, 0, 0]])
    loss_weight = torch.tensor([[1.0, 1, 1, 1, 0.5, 1], [1, 1, 1, 1, 1, 1]])
    per_class, mean = weights.per_pixel(labels, loss_weight, 255)
    assert torch.allclose(per_class[0, :5], c[[0, 0, 0, 0, 1]]) and torch.allclose(per_class[1], c[[2, 2, 0, 0, 0, 0]])
    by_hand = (8 * c[0] + 0.5 * c[1] + 2 * c[2]) / 10.5  # the ignored pixel counts nowhere
    assert mean.item() == pytest.approx(by_hand.item()) and mean.item() < 1  # the agreed frequent class shrinks the loss


def test_gradual_distillation_schedule():
    # 1000 iterations, pre-adaptation 25%, ramp 25%
    values = [kd_weight(s, 1000, 0.25, 0.25, "linear", 2.0) for s in (0, 249, 250, 375, 500, 900)]
    assert values == [0.0, 0.0, 0.0, 1.0, 2.0, 2.0]
    assert kd_weight(375, 1000, 0.25, 0.25, "cosine", 1.0) == pytest.approx(0.5)
    assert kd_weight(499, 1000, 0.25, 0.25, "step", 1.0) == 0.0 and kd_weight(500, 1000, 0.25, 0.25, "step", 1.0) == 1.0
    assert ramp(0.25, "cosine") == pytest.approx(0.5 * (1 - math.cos(math.pi / 4)))
    assert lr_factor(0, 100, 10, 1.0) == pytest.approx(1e-6) and lr_factor(10, 100, 10, 1.0) == pytest.approx(0.9)


def test_fusion_of_several_teachers():
    a = torch.tensor([0.9, 0.1]).view(1, 2, 1, 1)
    b = torch.tensor([0.4, 0.6]).view(1, 2, 1, 1)
    assert torch.allclose(fuse([a, b], "mean").flatten(), torch.tensor([0.65, 0.35]))
    confident = fuse([a, b], "confidence").flatten()
    assert torch.allclose(confident, (0.9 * a + 0.6 * b).flatten() / 1.5)
    assert torch.equal(fuse([a], "mean"), a)


def test_color_jitter_and_block_mask_are_reproducible():
    images = torch.rand(2, 3, 16, 16)
    one = color_jitter(images, 0.2, 1.0, torch.Generator().manual_seed(3))
    two = color_jitter(images, 0.2, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(one, two) and not torch.equal(one, images)
    mask = block_mask((2, 64, 64), 16, 0.7, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert mask.shape == (2, 1, 64, 64)
    blocks = mask[:, 0, ::16, ::16]
    assert torch.equal(mask[:, 0], blocks.repeat_interleave(16, 1).repeat_interleave(16, 2))


def test_feature_distance_is_the_mean_l2_over_thing_pixels_of_the_downsampled_labels():
    features = torch.zeros(1, 2, 2, 2)
    imagenet = torch.zeros(1, 2, 2, 2)
    features[0, :, 0, 0] = torch.tensor([3.0, 4.0])  # distance 5 on a car pixel
    features[0, :, 0, 1] = torch.tensor([1.0, 0.0])  # distance 1 on a person pixel
    features[0, :, 1, 1] = torch.tensor([9.0, 9.0])  # on road: not a thing class, not counted
    labels = torch.zeros(1, 4, 4, dtype=torch.long)  # road
    labels[0, :2, :2], labels[0, :2, 2:] = 13, 11  # car, person (each a 2x2 block -> one feature pixel)
    assert feature_distance(features, imagenet, labels, (11, 13)).item() == pytest.approx(3.0)
    assert feature_distance(features, imagenet, torch.zeros_like(labels), (11, 13)).item() == 0.0


def test_a_batchnorm_statistics_pass_moves_only_the_running_statistics():
    """One momentum step (0.1) of each BatchNorm layer's running mean and (unbiased) variance towards the
    batch's statistics; weights, gradients and the output path untouched."""
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    network.eval()
    weights = [p.detach().clone() for p in network.parameters()]
    images = torch.rand(2, 3, 8, 8) * 3 + 1
    features = network[0](images).detach()
    update_batchnorm_statistics(network, images, torch.device("cpu"), amp=False)
    batchnorm = network[1]
    assert torch.allclose(batchnorm.running_mean, 0.1 * features.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(batchnorm.running_var, 0.9 + 0.1 * features.var(dim=(0, 2, 3), unbiased=True), atol=1e-5)
    assert int(batchnorm.num_batches_tracked) == 1
    assert all(torch.equal(a, b) for a, b in zip(weights, network.parameters(), strict=True))
    assert all(p.grad is None for p in network.parameters())
