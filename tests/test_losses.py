"""Losses against hand computations, with the signs of the original."""

import math

import torch

from sdn.losses import EntropyLoss, SoftCrossEntropy, scene_loss, top1_correct


def test_soft_cross_entropy_matches_a_hand_computation():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]])
    target = torch.tensor([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]], dtype=torch.float64)
    expected = 0.0
    for row, probs in zip(logits.tolist(), target.tolist()):
        log_z = math.log(sum(math.exp(v) for v in row))
        expected += -sum(p * (v - log_z) for p, v in zip(probs, row))
    loss = SoftCrossEntropy()(logits, target)
    assert loss.dtype == torch.float32  # float64 targets are cast, not promoted
    assert abs(loss.item() - expected / 2) < 1e-6


def test_soft_cross_entropy_does_not_renormalise_targets():
    logits = torch.zeros(1, 4)
    assert abs(SoftCrossEntropy()(logits, torch.full((1, 4), 0.5)).item() - 2 * math.log(4)) < 1e-6


def test_entropy_signs():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    p = torch.softmax(logits, 1)[0].tolist()
    h = -sum(v * math.log(v) for v in p)
    assert abs(EntropyLoss()(logits).item() - h) < 1e-6
    assert abs(EntropyLoss(maximize=True)(logits).item() + h) < 1e-6
    # descending -H raises the entropy
    x = logits.clone().requires_grad_(True)
    EntropyLoss(maximize=True)(x).backward()
    stepped = (x - 0.1 * x.grad).detach()
    assert EntropyLoss()(stepped).item() > h


def test_scene_loss_kinds_and_accuracy():
    assert isinstance(scene_loss(True), SoftCrossEntropy)
    assert isinstance(scene_loss(False), torch.nn.CrossEntropyLoss)
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert top1_correct(logits, torch.tensor([1, 1, 1])) == 2
    assert top1_correct(logits, torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.6, 0.4]])) == 2


def test_losses_on_mixed_precision_logits_are_computed_in_float32():
    import torch

    from sdn.losses import EntropyLoss, SoftCrossEntropy

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 365, generator=generator).bfloat16()
    target = torch.softmax(torch.randn(8, 365, generator=generator, dtype=torch.float64), dim=1)
    exact = -(target * torch.log_softmax(logits.double(), dim=1)).sum(dim=1).mean()
    soft = SoftCrossEntropy()(logits, target)
    assert soft.dtype == torch.float32
    assert abs(soft.item() - exact.item()) < 1e-5  # in bf16 arithmetic it came out 0.015 off
    log_p = torch.log_softmax(logits.double(), dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1).mean()
    assert EntropyLoss()(logits).dtype == torch.float32
    assert abs(EntropyLoss()(logits).item() - entropy.item()) < 1e-5
    plain = torch.randn(4, 5, generator=generator)
    assert SoftCrossEntropy()(plain, torch.softmax(plain, 1)).dtype == torch.float32  # float32 stays as it was
