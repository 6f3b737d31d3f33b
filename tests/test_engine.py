"""The training engine: objectives, optimizer schedule, trainer, logs, resume.

* the full mode's two optimizer steps per iteration, in the original order, observed with hooks;
* the sign of each mask-loss variant's gradient at the backbone, against the un-reversed quantity
  differentiated by hand (and the scene branch, for comparison);
* ``OptimizerSchedule``: warm-up/second optimizers, their groups and hyper-parameters, which scheduler
  steps, state round trip, original checkpoints;
* the trainer's logs (columns per mode, ``iter``, weighted epoch means) and its non-finite-loss stop;
* resume through the real CLI in each mode: same optimizer/scheduler state, bitwise-equal weights and
  logs to an uninterrupted run, logs appended with one header.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

import sdn.cli.train as train_cli
import sdn.training as training
from sdn.checkpoint import read_checkpoint
from sdn.config import parse_opts
from sdn.data.synth import generate
from sdn.engine.logger import TabLogger
from sdn.engine.objectives import Baseline, FullSDN, SceneAdversarial, build_objective, read_metrics
from sdn.engine.optim import OptimizerConfig, OptimizerSchedule
from sdn.engine.trainer import EpochLoader, Trainer, TrainerConfig, open_logs
from sdn.errors import SdnError
from sdn.losses import SoftCrossEntropy
from sdn.models import SDNOutput, build_model

PLACES = 5
CLASSES = 3

# Reference 15.1, exact header strings.
BASELINE_TRAIN = ["epoch", "loss", "acc", "lr"]
BASELINE_BATCH = ["epoch", "batch", "iter", "loss", "acc", "lr"]
BASELINE_VAL = ["epoch", "loss", "acc"]
ADV_TRAIN = ["epoch", "loss total", "loss act", "loss place", "acc act", "acc place", "lr"]
ADV_BATCH = ["epoch", "batch", "iter", "loss total", "loss act", "loss place", "acc act", "acc place", "lr"]
ADV_VAL = ["epoch", "loss total", "loss act", "loss place", "acc act", "acc place"]
FULL_EXTRA = ["loss mask", "acc mask", "masked share"]  # sdn's additions, after the original columns


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models here are tiny: one intra-op thread is as fast and does not stall on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def options(*flags: str):
    return parse_opts(["--root_path", "", "--no_progress", "--no_tensorboard", *flags])


FULL_FLAGS = ("--is_place_adv", "--num_places_classes", str(PLACES), "--is_place_soft")


def tiny_model(alpha: float = 1.0, alpha_hm: float = 1.0, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("resnet", 10, n_classes=CLASSES, sample_size=16, sample_duration=4, resnet_shortcut="A",
                       with_place_head=True, with_hm_head=True, num_places_classes=PLACES, alpha=alpha,
                       alpha_hm=alpha_hm)


def head_of(name: str) -> str:
    return name.split(".")[0] if name.split(".")[0] in ("fc", "hm_mlp", "place_mlp") else "backbone"


class ListDataset(Dataset):
    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        return self.items[key[1]]  # EpochLoader passes (epoch, index)


def unmasked_items(n: int, seed: int) -> list[dict]:
    """Clips with values >= 0 (so a hook can tell them from the masked loader's clips, all < 0)."""
    g = torch.Generator().manual_seed(seed)
    return [{"clip": torch.rand(3, 4, 16, 16, generator=g), "label": i % CLASSES,
             "place": torch.softmax(torch.randn(PLACES, generator=g), 0)} for i in range(n)]


def masked_items(n: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"clip": -0.01 - torch.rand(3, 4, 16, 16, generator=g), "label": (i + 1) % CLASSES,
             "is_masking": i % 2 == 0} for i in range(n)]


def loader(items: list[dict], batch_size: int = 2, drop_last: bool = True, stream: int = 0) -> EpochLoader:
    return EpochLoader(ListDataset(items), batch_size=batch_size, shuffle=False, drop_last=drop_last, workers=0,
                       pin_memory=False, seed=1, stream=stream)


def schedule_for(model, opt, *, pretrained: bool) -> OptimizerSchedule:
    """The run's optimizers, as if ``--pretrain_path`` was (not) given."""
    return OptimizerSchedule(model, dataclasses.replace(OptimizerConfig.from_options(opt), pretrained=pretrained))


def make_trainer(opt, model, objective, schedule, result: Path, *, train=True, val=False) -> Trainer:
    logs = open_logs(str(result), objective, train=train, val=val, resume_at=None, tensorboard=False)
    return Trainer(model=model, objective=objective, schedule=schedule, config=TrainerConfig.from_options(opt),
                   device=torch.device("cpu"), prepare=lambda clip: clip, logs=logs,
                   class_names=[str(i) for i in range(CLASSES)])


def read_log(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    return header, [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy of softmax(logits), written out by hand (not sdn.losses)."""
    p = torch.softmax(logits, dim=1)
    return -(p * torch.log(p)).sum(dim=1).mean()


def assert_same(a, b, where: str = "state") -> None:
    """Exact equality of nested dicts/lists/tensors (tensors bitwise, same dtype)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# ---------------------------------------------------------------------------------------------
# Objectives: the full mode's order of operations


def test_full_objective_yields_lazily_so_the_masked_forward_comes_after_the_first_step():
    opt = options(*FULL_FLAGS, "--is_mask_entropy")
    model = tiny_model()
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append("A" if args[0].min() >= 0 else "B"))
    batch_a = {"clip": torch.stack([x["clip"] for x in unmasked_items(2, 0)]), "label": torch.tensor([0, 1]),
               "place": torch.stack([x["place"] for x in unmasked_items(2, 0)])}
    batch_b = {"clip": torch.stack([x["clip"] for x in masked_items(2, 1)]), "label": torch.tensor([1, 2]),
               "is_masking": torch.tensor([True, False])}
    steps = build_objective("full", opt).steps(model, [batch_a, batch_b], epoch=1)
    first = next(steps)
    assert seen == ["A"] and set(first.metrics) == {"loss total", "loss act", "loss place", "acc act", "acc place"}
    second = next(steps)
    assert seen == ["A", "B"] and set(second.metrics) == set(FULL_EXTRA)
    assert second.metrics["masked share"] == (0.5, 2)
    assert next(steps, None) is None


@pytest.mark.parametrize("to_none", [False, True], ids=["zero_in_place", "zero_grad_to_none"])
def test_full_mode_takes_the_unmasked_step_then_the_masked_step_each_iteration(tmp_path, to_none):
    flags = [*FULL_FLAGS, "--is_mask_entropy", "--warm_up_epochs", "0", "--learning_rate", "0.01"]
    opt = options(*flags, *(["--zero_grad_to_none"] if to_none else []))
    model = tiny_model()
    objective = build_objective("full", opt)
    schedule = schedule_for(model, opt, pretrained=False)
    optimizer = schedule.optimizer_for(1)
    assert optimizer is schedule.optimizers["second"]
    watched = {"conv1": model.conv1.weight, "fc": model.fc.weight, "hm": model.hm_mlp.hm_last_fc.weight,
               "place": model.place_mlp.p_last_fc.weight}
    events: list[dict] = []
    outputs: list[SDNOutput] = []

    def on_forward(module, args):
        events.append({"what": "forward", "batch": "A" if args[0].min() >= 0 else "B",
                       "weights": {k: w.detach().clone() for k, w in watched.items()}})

    def grad_state(p: torch.Tensor) -> str:
        return "none" if p.grad is None else ("zero" if not p.grad.any() else "nonzero")

    def on_step(opt_, args, kwargs):
        events.append({"what": "step", "grads": {k: grad_state(w) for k, w in watched.items()},
                       "before": {k: w.detach().clone() for k, w in watched.items()}})

    def after_step(opt_, args, kwargs):
        events[-1]["after"] = {k: w.detach().clone() for k, w in watched.items()}

    model.register_forward_pre_hook(on_forward)
    model.register_forward_hook(lambda module, args, out: outputs.append(out))
    optimizer.register_step_pre_hook(on_step)
    optimizer.register_step_post_hook(after_step)
    for name, other in schedule.optimizers.items():
        if other is not optimizer:
            other.register_step_pre_hook(lambda *a: pytest.fail(f"optimizer {name} stepped"))

    items_a, items_b = unmasked_items(4, 0), masked_items(4, 1)
    trainer = make_trainer(opt, model, objective, schedule, tmp_path)
    trainer.train_epoch(1, [loader(items_a), loader(items_b, stream=1)])
    trainer.logs.close()

    # forward A, step (unmasked loss), forward B, step (mask loss): twice.
    assert [(e["what"], e.get("batch")) for e in events] == [("forward", "A"), ("step", None),
                                                              ("forward", "B"), ("step", None)] * 2
    steps = [e for e in events if e["what"] == "step"]
    forwards = [e for e in events if e["what"] == "forward"]
    # Which loss each step applied, from where its gradient arrived: step A reaches fc and place_mlp, not hm_mlp;
    # step B (entropy of the hm head) reaches hm_mlp, not fc or place_mlp. Before iteration 1 hm_mlp never had a
    # gradient (None); afterwards gradients are zeroed in place unless --zero_grad_to_none.
    untouched = "none" if to_none else "zero"
    assert steps[0]["grads"] == {"conv1": "nonzero", "fc": "nonzero", "place": "nonzero", "hm": "none"}
    assert steps[1]["grads"] == {"conv1": "nonzero", "fc": untouched, "place": untouched, "hm": "nonzero"}
    assert steps[2]["grads"] == {"conv1": "nonzero", "fc": "nonzero", "place": "nonzero", "hm": untouched}
    assert steps[3]["grads"] == {"conv1": "nonzero", "fc": untouched, "place": untouched, "hm": "nonzero"}
    # The masked forward sees the weights step A produced, and the next iteration those of step B.
    for forward, step in [(forwards[1], steps[0]), (forwards[2], steps[1]), (forwards[3], steps[2])]:
        assert_same(forward["weights"], step["after"])
    assert not torch.equal(steps[0]["before"]["conv1"], steps[0]["after"]["conv1"])
    assert not torch.equal(forwards[0]["weights"]["conv1"], forwards[1]["weights"]["conv1"])
    # Reference 8.3: with in-place zeroing a parameter the loss does not reach still moves (momentum, weight
    # decay); with set_to_none it is skipped.
    moved_hm = not torch.equal(steps[2]["before"]["hm"], steps[2]["after"]["hm"])
    moved_fc = not torch.equal(steps[3]["before"]["fc"], steps[3]["after"]["fc"])
    assert moved_hm == moved_fc == (not to_none)

    # The losses are the original's, recomputed from the recorded forward outputs.
    soft_ce = SoftCrossEntropy()
    _, rows = read_log(tmp_path / "train_batch.log")
    assert [(r["batch"], r["iter"]) for r in rows] == [("1", "1"), ("2", "2")]
    for i, row in enumerate(rows):
        out_a, out_b = outputs[2 * i], outputs[2 * i + 1]
        labels_a = torch.tensor([items_a[2 * i + k]["label"] for k in range(2)])
        places_a = torch.stack([items_a[2 * i + k]["place"] for k in range(2)])
        act = F.cross_entropy(out_a.action, labels_a)
        place = soft_ce(out_a.place, places_a)
        assert float(row["loss act"]) == pytest.approx(act.item(), rel=1e-5)
        assert float(row["loss place"]) == pytest.approx(place.item(), rel=1e-5, abs=1e-6)
        assert float(row["loss total"]) == pytest.approx((act + place).item(), rel=1e-5)
        assert float(row["loss mask"]) == pytest.approx(-entropy(out_b.hm).item(), rel=1e-5)
        assert float(row["lr"]) == 0.01


@pytest.mark.parametrize("maximize", [False, True])
def test_place_entropy_term_is_weighted_in_training_unweighted_in_validation_from_warm_up_on(maximize):
    flags = [*FULL_FLAGS, "--is_mask_adv", "--is_place_entropy", "--weight_entropy_loss", "0.25",
             "--warm_up_epochs", "2", *(["--is_entropy_max"] if maximize else [])]
    objective = build_objective("place_adv", options(*flags))
    g = torch.Generator().manual_seed(0)
    out = SDNOutput(action=torch.randn(3, CLASSES, generator=g), place=torch.randn(3, PLACES, generator=g))
    batch = {"clip": None, "label": torch.tensor([0, 2, 1]), "place": torch.softmax(torch.randn(3, PLACES), 1)}
    base = F.cross_entropy(out.action, batch["label"]) + SoftCrossEntropy()(out.place, batch["place"])
    h = entropy(out.place) * (-1 if maximize else 1)  # HLoss: +H, or -H with --is_entropy_max

    def total(steps) -> float:
        (step,) = list(steps)
        assert read_metrics(step.metrics)["loss total"][0] == pytest.approx(step.loss.item())
        return step.loss.item()

    model = lambda clip: out  # noqa: E731
    assert total(objective.steps(model, [batch], epoch=1)) == pytest.approx(base.item())  # before warm_up_epochs
    assert total(objective.steps(model, [batch], epoch=2)) == pytest.approx((base + 0.25 * h).item())
    assert total(objective.validation_steps(model, [batch], epoch=2)) == pytest.approx((base + h).item())
    assert total(objective.validation_steps(model, [batch], epoch=1)) == pytest.approx(base.item())


# ---------------------------------------------------------------------------------------------
# Gradient signs at the backbone, behind the gradient reversal layers


@pytest.mark.parametrize("flags, variant", [
    (["--is_mask_entropy"], "original"),
    (["--is_mask_entropy", "--mask_loss", "original"], "original"),
    (["--is_mask_cross_entropy"], "cross_entropy"),
    (["--mask_loss", "cross_entropy"], "cross_entropy"),
    (["--mask_loss", "paper"], "paper"),
])
def test_mask_step_gradient_reaches_the_backbone_with_the_reference_sign(flags, variant):
    opt = options(*FULL_FLAGS, *flags)
    assert opt.mask_loss == variant
    alpha_hm = 0.5
    model = tiny_model(alpha_hm=alpha_hm).double()
    model.train()
    g = torch.Generator().manual_seed(7)
    clip = torch.rand(4, 3, 4, 16, 16, generator=g, dtype=torch.float64) * 100
    label = torch.tensor([0, 1, 2, 1])
    batch_a = {"clip": clip.flip(0), "label": label, "place": torch.full((4, PLACES), 1.0 / PLACES)}
    batch_b = {"clip": clip, "label": label, "is_masking": torch.ones(4, dtype=torch.bool)}
    steps = build_objective("full", opt).steps(model, [batch_a, batch_b], epoch=1)
    next(steps)  # step A (not stepped here)
    loss = next(steps).loss  # what step B back-propagates
    params = dict(model.named_parameters())
    names = list(params)
    grads = dict(zip(names, torch.autograd.grad(loss, list(params.values()), allow_unused=True)))

    # The un-reversed quantity, by hand: the head applied to the pooled feature directly.
    feature = model.pooled_features(clip)
    if variant == "original":
        plain = -entropy(model.hm_mlp(feature))
    elif variant == "cross_entropy":
        plain = F.cross_entropy(model.hm_mlp(feature), label)
    else:
        plain = -entropy(model.fc(feature))
    assert plain.item() == pytest.approx(loss.item(), rel=1e-12)
    plain_grads = dict(zip(names, torch.autograd.grad(plain, list(params.values()), allow_unused=True)))

    backbone = [n for n in names if head_of(n) == "backbone"]
    reached = {head_of(n) for n in names if grads[n] is not None}
    if variant == "paper":
        # No reversal: the whole network, action classifier included, descends -H(action logits).
        assert reached == {"backbone", "fc"}
        sign = 1.0
        own_head = "fc"
    else:
        # Behind the hm head's reversal: the head descends the loss, the backbone gets -alpha_hm x its gradient,
        # the action classifier and the place head nothing.
        assert reached == {"backbone", "hm_mlp"}
        sign = -alpha_hm
        own_head = "hm_mlp"
    for name in names:
        if head_of(name) == own_head:
            assert torch.allclose(grads[name], plain_grads[name], rtol=1e-9, atol=1e-14), name
    total = 0.0
    for name in backbone:
        if plain_grads[name] is None:
            assert grads[name] is None
            continue
        assert torch.allclose(grads[name], sign * plain_grads[name], rtol=1e-9, atol=1e-14), name
        total += float(plain_grads[name].abs().sum())
    assert total > 1e-6  # a real gradient reached the backbone

    # In words: one descent step of the backbone on the mask loss moves the un-reversed quantity by
    # -lr * sign * |grad|^2: 'original' lowers the hm head's entropy (plain = -H rises), 'cross_entropy'
    # raises the hm head's CE, 'paper' raises the action entropy (plain = -H falls).
    inner = sum(float((grads[n] * plain_grads[n]).sum()) for n in backbone if grads[n] is not None)
    assert (inner < 0) == (variant != "paper")


def test_scene_loss_gradient_is_reversed_and_scaled_by_alpha_at_the_backbone():
    alpha = 0.25
    model = tiny_model(alpha=alpha).double()
    g = torch.Generator().manual_seed(3)
    clip = torch.rand(4, 3, 4, 16, 16, generator=g, dtype=torch.float64) * 100
    target = torch.softmax(torch.randn(4, PLACES, generator=g, dtype=torch.float64), 1)
    loss = SoftCrossEntropy()(model(clip).place, target)
    plain = SoftCrossEntropy()(model.place_mlp(model.pooled_features(clip)), target)
    conv = model.layer4[0].conv1.weight
    head = model.place_mlp.p_last_fc.weight
    (g_conv, g_head) = torch.autograd.grad(loss, [conv, head])
    (p_conv, p_head) = torch.autograd.grad(plain, [conv, head])
    assert torch.allclose(g_head, p_head, rtol=1e-9)
    assert torch.allclose(g_conv, -alpha * p_conv, rtol=1e-9, atol=1e-14) and p_conv.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# OptimizerSchedule


def ids(params) -> set[int]:
    return {id(p) for p in params}


def test_adversarial_schedule_warm_up_then_second_optimizer_with_two_groups():
    opt = options(*FULL_FLAGS, "--is_mask_entropy", "--warm_up_epochs", "3", "--new_layer_lr", "0.01",
                  "--learning_rate", "0.2", "--momentum", "0.8", "--dampening", "0.7", "--weight_decay", "1e-4",
                  "--lr_patience", "0")
    model = tiny_model()
    schedule = schedule_for(model, opt, pretrained=True)
    assert set(schedule.optimizers) == {"first", "second"} and set(schedule.schedulers) == {"first", "second"}
    first, second = schedule.optimizers["first"], schedule.optimizers["second"]
    new = ids(p for n, p in model.named_parameters() if head_of(n) in ("fc", "hm_mlp", "place_mlp"))
    old = ids(p for n, p in model.named_parameters() if head_of(n) == "backbone")
    assert len(first.param_groups) == 1 and ids(first.param_groups[0]["params"]) == new
    assert first.param_groups[0]["lr"] == 0.01
    assert [ids(g["params"]) for g in second.param_groups] == [old, new]
    assert [g["lr"] for g in second.param_groups] == [0.2, 0.2]  # new_layer_lr only in the warm-up optimizer
    for group in [*first.param_groups, *second.param_groups]:
        assert (group["momentum"], group["dampening"], group["weight_decay"], group["nesterov"]) == (0.8, 0.7, 1e-4,
                                                                                                     False)
    # Epoch i uses the first optimizer iff i < warm_up_epochs.
    assert [schedule.name_for(e) for e in (1, 2, 3, 4)] == ["first", "first", "second", "second"]
    assert schedule.optimizer_for(2) is first and schedule.optimizer_for(3) is second
    assert schedule.scheduler_for(2) is schedule.schedulers["first"]
    assert schedule.scheduler_for(3) is schedule.schedulers["second"]
    for name, scheduler in schedule.schedulers.items():
        assert scheduler.optimizer is schedule.optimizers[name]
        assert (scheduler.mode, scheduler.patience, scheduler.factor, scheduler.threshold) == ("min", 0, 0.1, 1e-4)

    # Stepping the epoch's scheduler on a plateau scales only its optimizer (all its groups) by 0.1.
    schedule.scheduler_for(1).step(1.0)
    schedule.scheduler_for(2).step(2.0)
    assert first.param_groups[0]["lr"] == pytest.approx(0.001)
    assert [g["lr"] for g in second.param_groups] == [0.2, 0.2]
    schedule.scheduler_for(3).step(1.0)
    schedule.scheduler_for(4).step(1.0)
    assert [g["lr"] for g in second.param_groups] == [pytest.approx(0.02)] * 2
    assert first.param_groups[0]["lr"] == pytest.approx(0.001)


def test_nesterov_forces_dampening_zero():
    opt = options(*FULL_FLAGS, "--is_mask_entropy", "--nesterov", "--dampening", "0.9")
    schedule = schedule_for(tiny_model(), opt, pretrained=True)
    for optimizer in schedule.optimizers.values():
        assert all(g["dampening"] == 0 and g["nesterov"] for g in optimizer.param_groups)


def test_baseline_schedule_is_one_optimizer_with_fine_tuning_groups():
    model = build_model("resnet", 10, n_classes=CLASSES, resnet_shortcut="A")
    opt = options("--is_mask_adv", "--learning_rate", "0.05", "--ft_begin_index", "3")
    schedule = schedule_for(model, opt, pretrained=True)
    assert list(schedule.optimizers) == ["main"] and [schedule.name_for(e) for e in (1, 20)] == ["main", "main"]
    groups = schedule.optimizers["main"].param_groups
    names = [n for n, _ in model.named_parameters()]
    assert len(groups) == len(names)
    trained = [n for n, g in zip(names, groups) if g["lr"] == 0.05]
    assert trained and all(n.startswith(("layer3", "layer4", "fc")) for n in trained)
    assert all(g["lr"] == 0.0 for n, g in zip(names, groups) if not n.startswith(("layer3", "layer4", "fc")))
    assert groups[0]["dampening"] == 0.9  # the original's default
    # Without a pretrained model every parameter trains at the base LR.
    plain = schedule_for(model, opt, pretrained=False).optimizers["main"].param_groups
    assert len(plain) == 1 and plain[0]["lr"] == 0.05 and ids(plain[0]["params"]) == ids(model.parameters())


def test_warm_up_with_no_new_layers_is_an_error_and_no_warm_up_works():
    flags = [*FULL_FLAGS, "--is_mask_entropy", "--not_replace_last_fc", "--slower_place_mlp", "--slower_hm_mlp"]
    schedule = schedule_for(tiny_model(), options(*flags, "--warm_up_epochs", "2"), pretrained=True)
    assert "first" not in schedule.optimizers
    with pytest.raises(SdnError, match="--warm_up_epochs 2"):
        schedule.optimizer_for(1)
    assert schedule.name_for(2) == "second"
    schedule = schedule_for(tiny_model(), options(*flags, "--warm_up_epochs", "0"), pretrained=True)
    assert schedule.name_for(1) == "second"


def _train_steps(model, schedule, epochs, seed):
    g = torch.Generator().manual_seed(seed)
    for epoch in epochs:
        optimizer = schedule.optimizer_for(epoch)
        optimizer.zero_grad(set_to_none=False)
        out = model(torch.rand(2, 3, 4, 16, 16, generator=g))
        (F.cross_entropy(out.action, torch.tensor([0, 1])) + out.place.logsumexp(1).mean()).backward()
        optimizer.step()
        schedule.scheduler_for(epoch).step(float(epoch))


def test_schedule_state_round_trip_restores_optimizers_schedulers_and_gradient_presence():
    opt = options(*FULL_FLAGS, "--is_mask_entropy", "--warm_up_epochs", "2", "--lr_patience", "0")
    model = tiny_model()
    model_copy = copy.deepcopy(model)
    schedule = schedule_for(model, opt, pretrained=True)
    _train_steps(model, schedule, [1, 2, 3], seed=0)
    state = schedule.state_dict()
    assert set(state) == {"optimizers", "schedulers", "grad_present"}
    assert state["optimizers"]["first"]["state"] and state["optimizers"]["second"]["state"]
    assert state["schedulers"]["second"]["last_epoch"] == 2

    model_copy.load_state_dict(model.state_dict())
    restored = schedule_for(model_copy, opt, pretrained=True)
    assert all(p.grad is None for p in model_copy.parameters())
    restored.load_state_dict(copy.deepcopy(state))
    assert_same(restored.state_dict(), state)
    # hm_mlp got no gradient from this loss, so it has none after the resume either.
    assert [p.grad is None for p in model_copy.parameters()] == [p.grad is None for p in model.parameters()]
    assert model_copy.hm_mlp.hm_last_fc.weight.grad is None and model_copy.conv1.weight.grad is not None
    # Continuing gives the same weights.
    _train_steps(model, schedule, [4, 5], seed=1)
    _train_steps(model_copy, restored, [4, 5], seed=1)
    assert_same(model_copy.state_dict(), model.state_dict())
    assert_same(restored.state_dict(), schedule.state_dict())

    with pytest.raises(SdnError, match="'main'"):
        restored.load_state_dict({"optimizers": {"main": state["optimizers"]["first"]}})


def test_load_original_fills_the_optimizer_of_the_saved_epoch():
    opt = options(*FULL_FLAGS, "--is_mask_entropy", "--warm_up_epochs", "3")
    model = tiny_model()
    source = schedule_for(model, opt, pretrained=True)
    _train_steps(model, source, [1, 3], seed=0)
    for saved_epoch, name, other in [(2, "first", "second"), (3, "second", "first")]:
        target = schedule_for(copy.deepcopy(model), opt, pretrained=True)
        target.load_original(source.optimizers[name].state_dict(), saved_epoch)
        assert_same(target.optimizers[name].state_dict(), source.optimizers[name].state_dict())
        assert target.optimizers[other].state_dict()["state"] == {}


# ---------------------------------------------------------------------------------------------
# Logs and the trainer


def test_tab_logger_writes_the_original_format(tmp_path):
    path = tmp_path / "train.log"
    logger = TabLogger(str(path), ["epoch", "loss total", "lr"])
    # Header first, flushed at once; csv's "\r\n" line end, as the original's csv writer on Linux.
    assert path.read_bytes() == b"epoch\tloss total\tlr\r\n"
    logger.log({"epoch": 1, "loss total": 0.0625, "lr": 1e-05, "ignored": 3})
    assert path.read_text().splitlines()[1] == "1\t0.0625\t1e-05"  # str() values, flushed per row
    logger.log({"epoch": 2, "loss total": 2.3431570529937744, "lr": 0.1})
    with pytest.raises(ValueError, match="lr"):
        logger.log({"epoch": 3, "loss total": 1.0})
    logger.close()
    assert path.read_text().splitlines() == ["epoch\tloss total\tlr", "1\t0.0625\t1e-05",
                                             "2\t2.3431570529937744\t0.1"]

    TabLogger(str(path), ["epoch", "loss total", "lr"], append=True).log({"epoch": 3, "loss total": 1.5, "lr": 0.1})
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch\tloss total\tlr" and lines.count(lines[0]) == 1 and lines[-1] == "3\t1.5\t0.1"
    TabLogger(str(path), ["epoch"], append=False).close()  # a new run (no resume) starts the file again
    assert path.read_text().splitlines() == ["epoch"]
    empty = tmp_path / "empty.log"
    empty.write_text("")
    TabLogger(str(empty), ["epoch"], append=True).close()  # appending to an empty file still writes the header
    assert empty.read_text().splitlines() == ["epoch"]


@pytest.mark.parametrize("objective, columns", [
    (Baseline(), (BASELINE_TRAIN, BASELINE_BATCH, BASELINE_VAL)),
    (build_objective("place_adv", options(*FULL_FLAGS, "--is_mask_adv")), (ADV_TRAIN, ADV_BATCH, ADV_VAL)),
    (build_objective("full", options(*FULL_FLAGS, "--is_mask_entropy")),
     (ADV_TRAIN + FULL_EXTRA, ADV_BATCH + FULL_EXTRA, ADV_VAL + FULL_EXTRA)),
], ids=["baseline", "place_adv", "full"])
def test_log_headers_per_mode(tmp_path, objective, columns):
    logs = open_logs(str(tmp_path), objective, train=True, val=True, resume_at=None, tensorboard=False)
    logs.close()
    for name, expected in zip(("train.log", "train_batch.log", "val.log"), columns):
        assert (tmp_path / name).read_text().splitlines() == ["\t".join(expected)]


class Linear3D(nn.Module):
    """A minimal model returning SDNOutput, for trainer tests that need no backbone."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 4 * 2 * 2, CLASSES)

    def forward(self, clip):
        return SDNOutput(action=self.fc(F.adaptive_avg_pool3d(clip, (4, 2, 2)).flatten(1)))


def baseline_items(n: int, nan_from: int | None = None) -> list[dict]:
    g = torch.Generator().manual_seed(5)
    items = [{"clip": torch.rand(3, 4, 8, 8, generator=g), "label": i % CLASSES} for i in range(n)]
    for item in items[nan_from:] if nan_from is not None else []:
        item["clip"] = torch.full_like(item["clip"], float("nan"))
    return items


def test_trainer_baseline_logs_batches_iter_lr_and_weighted_means(tmp_path):
    opt = options("--is_mask_adv", "--learning_rate", "0.01")
    model = Linear3D()
    objective = Baseline()
    schedule = schedule_for(model, opt, pretrained=False)
    trainer = make_trainer(opt, model, objective, schedule, tmp_path, val=True)
    train = loader(baseline_items(5), drop_last=False)  # batches of 2, 2, 1
    means = trainer.train_epoch(2, [train])
    val_means = trainer.validate(2, [loader(baseline_items(5), drop_last=False, stream=10)])
    trainer.logs.close()
    assert not model.training

    header, rows = read_log(tmp_path / "train_batch.log")
    assert header == BASELINE_BATCH
    assert [(r["epoch"], r["batch"], r["iter"], r["lr"]) for r in rows] == [("2", "1", "4", "0.01"),
                                                                           ("2", "2", "5", "0.01"),
                                                                           ("2", "3", "6", "0.01")]
    weighted = (2 * float(rows[0]["loss"]) + 2 * float(rows[1]["loss"]) + float(rows[2]["loss"])) / 5
    _, epoch_rows = read_log(tmp_path / "train.log")
    assert len(epoch_rows) == 1 and epoch_rows[0]["epoch"] == "2" and epoch_rows[0]["lr"] == "0.01"
    assert float(epoch_rows[0]["loss"]) == pytest.approx(weighted, rel=1e-6) == means["loss"]
    assert float(epoch_rows[0]["acc"]) in {k / 5 for k in range(6)}
    _, val_rows = read_log(tmp_path / "val.log")
    assert [r["epoch"] for r in val_rows] == ["2"] and float(val_rows[0]["loss"]) == val_means["loss"]
    with torch.no_grad():
        clips = torch.stack([x["clip"] for x in baseline_items(5)])
        labels = torch.tensor([x["label"] for x in baseline_items(5)])
        expected = F.cross_entropy(model(clips).action, labels).item()
    assert val_means["loss"] == pytest.approx(expected, rel=1e-5)  # mean over clips of the trained model


def test_non_finite_loss_stops_naming_epoch_and_batch(tmp_path):
    opt = options("--is_mask_adv", "--learning_rate", "0.01")
    model = Linear3D()
    schedule = schedule_for(model, opt, pretrained=False)
    stepped = []
    schedule.optimizers["main"].register_step_post_hook(
        lambda *a: stepped.append({k: v.clone() for k, v in model.state_dict().items()}))
    trainer = make_trainer(opt, model, Baseline(), schedule, tmp_path)
    with pytest.raises(SdnError, match=r"non-finite loss \(nan\) at epoch 3, batch 2"):
        trainer.train_epoch(3, [loader(baseline_items(6, nan_from=2))])
    trainer.logs.close()
    assert len(stepped) == 1  # batch 1 stepped, the NaN batch did not
    assert_same(model.state_dict(), stepped[0])
    _, rows = read_log(tmp_path / "train_batch.log")
    assert [(r["epoch"], r["batch"]) for r in rows] == [("3", "1")]


# ---------------------------------------------------------------------------------------------
# Resume through the CLI (sdn resumes every mode exactly)


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("engine") / "d"
    summary = generate(root, classes=2, train_per_class=4, val_per_class=2, ooc_per_class=0, frames=10, width=48,
                       height=36)
    return root, summary["num_places"]


def mode_flags(mode: str, root: Path, places: int) -> list[str]:
    place = ["--is_place_adv", "--is_place_soft", "--num_places_classes", str(places), "--place_pred_path",
             str(root / "places")]
    return {
        "baseline": ["--dataset", "kinetics", "--is_mask_adv"],
        # epoch 1 warm-up optimizer, epoch 2 the second one: the switch happens across the resume.
        "place_adv": ["--dataset", "kinetics_adv", *place, "--is_mask_adv", "--warm_up_epochs", "2"],
        # both epochs on the second optimizer, so its momentum (and the gradient presence) must carry over.
        "full": ["--dataset", "kinetics_adv_msk", *place, "--is_mask_entropy", "--human_dets_path",
                 str(root / "dets"), "--mask_ratio", "1.0", "--warm_up_epochs", "1"],
    }[mode]


MODE_LOGS = {
    "baseline": (BASELINE_TRAIN, BASELINE_BATCH, BASELINE_VAL),
    "place_adv": (ADV_TRAIN, ADV_BATCH, ADV_VAL),
    "full": (ADV_TRAIN + FULL_EXTRA, ADV_BATCH + FULL_EXTRA, ADV_VAL + FULL_EXTRA),
}
LOG_NAMES = ("train.log", "train_batch.log", "val.log")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["baseline", "place_adv", "full"])
def test_resume_continues_exactly_like_an_uninterrupted_run(synth_data, mode, monkeypatch):
    root, places = synth_data
    common = ["--root_path", str(root), "--video_path", "jpg", "--annotation_path", "kinetics.json", "--model",
              "resnet", "--model_depth", "10", "--resnet_shortcut", "A", "--sample_size", "16", "--sample_duration",
              "4", "--batch_size", "2", "--val_batch_size", "2", "--n_threads", "0", "--n_classes", "2",
              "--n_finetune_classes", "2", "--no_progress", "--no_tensorboard", "--n_epochs", "2", "--checkpoint",
              "1", "--learning_rate", "0.01", "--new_layer_lr", "0.01", "--lr_patience", "0",
              *mode_flags(mode, root, places)]
    first, second = root / f"uninterrupted_{mode}", root / f"resumed_{mode}"
    assert train_cli.main([*common, "--result_path", first.name]) == 0

    for name, header in zip(LOG_NAMES, MODE_LOGS[mode]):
        assert read_log(first / name)[0] == header
    saved_1 = read_checkpoint(str(first / "save_1.pth"))
    saved_2 = read_checkpoint(str(first / "save_2.pth"))
    assert saved_1["epoch"] == 2 and saved_2["epoch"] == 3
    names = {"baseline": ["main"], "place_adv": ["first", "second"], "full": ["first", "second"]}[mode]
    assert list(saved_1["optimizers"]) == names
    used = {"baseline": ("main", "main"), "place_adv": ("first", "second"), "full": ("second", "second")}[mode]
    # The original "optimizer" key holds the optimizer of the epoch just finished.
    assert_same(saved_1["optimizer"], saved_1["optimizers"][used[0]])
    assert_same(saved_2["optimizer"], saved_2["optimizers"][used[1]])
    assert saved_1["optimizers"][used[0]]["state"]  # momentum buffers exist

    # A second result directory holding the logs up to epoch 1, as an interrupted run would have left them.
    second.mkdir()
    for name in LOG_NAMES:
        lines = (first / name).read_text().splitlines(keepends=True)
        (second / name).write_text(lines[0] + "".join(line for line in lines[1:] if line.split("\t")[0] == "1"),
                                   newline="")

    captured = {}

    def spy(path, opt, model, schedule):
        begin, checkpoint = real_resume(path, opt, model, schedule)
        captured["begin"] = begin
        captured["state"] = copy.deepcopy(schedule.state_dict())
        return begin, checkpoint

    real_resume = training.resume
    monkeypatch.setattr(training, "resume", spy)
    assert train_cli.main([*common, "--result_path", second.name, "--resume_path", str(first / "save_1.pth")]) == 0

    assert captured["begin"] == 2
    assert_same(captured["state"]["optimizers"], saved_1["optimizers"], "optimizers after resume")
    assert_same(captured["state"]["schedulers"], saved_1["schedulers"], "schedulers after resume")
    assert not (second / "save_1.pth").exists()
    resumed_2 = read_checkpoint(str(second / "save_2.pth"))
    assert_same(resumed_2["state_dict"], saved_2["state_dict"], "final weights")
    assert_same(resumed_2["optimizers"], saved_2["optimizers"], "final optimizers")
    assert_same(resumed_2["schedulers"], saved_2["schedulers"], "final schedulers")
    # Logs: appended after the epoch-1 rows with a single header, and identical to the uninterrupted run's.
    for name in LOG_NAMES:
        text = (second / name).read_text()
        assert text.count("epoch\t") == 1
        assert text == (first / name).read_text(), name


def test_a_validation_set_without_one_whole_batch_is_refused_up_front():
    items = unmasked_items(3, seed=0)
    assert len(loader(items, batch_size=2, drop_last=True)) == 1
    with pytest.raises(SdnError, match="3 clips give no batch of 4 on any process"):
        EpochLoader(ListDataset(items), batch_size=4, shuffle=False, drop_last=True, sharding="strided")
    assert len(EpochLoader(ListDataset(items), batch_size=4, drop_last=False, sharding="strided")) == 1
