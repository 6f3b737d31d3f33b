"""Debiasing methods (``--debias``): each does what its paper says, bad combinations are one-line
errors, and training with a method resumes exactly (mid-epoch too, through ``--auto_resume``).

* BE: a changed clip is ``(1 - λ) x + λ x[t]`` for the drawn λ and t; λ stays in [0, max];
* ActorCutMix: inside the actor mask the pixels are the source clip's, outside the partner's; the
  label weight is ``1 - (1 - r)^4``; clips without an actor (or all actor) stay unchanged; the
  dataset's ``actor_mask`` follows the clip through crops, scales and flips;
* FAME: the foreground found on a clip with one moving square is that square; merged pixels come
  from the clip inside the mask and from the background clip outside; the scene target follows
  the background.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sdn.cli.train as train_cli
import sdn.data.datasets as datasets_module
from sdn.checkpoint import read_checkpoint
from sdn.config import parse_opts
from sdn.data.annotations import ClipSample, VideoEntry
from sdn.data.datasets import ActorMasks, ClipDataset
from sdn.data.detections import HumanDetections
from sdn.data.human_masks import HumanMasks, save_human_masks
from sdn.data.synth import generate
from sdn.data.transforms import Compose, MultiScaleCornerCrop, MultiScaleRandomCrop, RandomHorizontalFlip
from sdn.engine.objectives import ActionLoss
from sdn.models import build_model
from sdn.engine.trainer import Trainer
from sdn.errors import SdnError
from sdn.engine.objectives import Albar, Baseline, FullSDN, build_objective
from sdn.methods.actorcutmix import ActorCutMix
from sdn.methods.albar import AlbarWeights, albar_terms, entropy, gradient_penalty, static_clips
from sdn.methods.be import BackgroundErasing
from sdn.methods.base import MethodSetup
from sdn.methods.fame import Fame, foreground_masks
from sdn.methods.frame_reference import FrameReference, frames_of, train_frame_reference
from sdn.methods.stillmix import StillMix, biased_frame_bank


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_clips(batch: int = 6, frames: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 3, frames, size, size), generator=generator(seed), dtype=torch.uint8)


# ----------------------------------------------------------------------------------------------
# BE


def test_be_clip_is_the_clip_plus_one_of_its_frames_with_the_drawn_weight():
    clips = random_clips().float()
    be = BackgroundErasing(max_weight=0.3, prob=1.0)
    draw = be.draw(clips.shape[0], clips.shape[2], generator(1))
    out = be.apply(clips, draw)
    assert (draw.weight > 0).all() and (draw.weight <= 0.3).all()
    for i in range(clips.shape[0]):
        lam, t = float(draw.weight[i]), int(draw.frame[i])
        expected = (1 - lam) * clips[i] + lam * clips[i, :, t:t + 1]
        torch.testing.assert_close(out[i], expected)


def test_be_call_uses_its_draw_keeps_labels_and_prob_zero_changes_nothing():
    clips = random_clips()
    batch = {"clip": clips.clone(), "label": torch.arange(6)}
    be = BackgroundErasing(0.3, 0.5)
    out = be(dict(batch), generator(5))
    expected = be.apply(clips.float(), be.draw(6, 4, generator(5)))
    torch.testing.assert_close(out["clip"], expected)
    assert torch.equal(out["label"], batch["label"]) and "label_weight" not in out
    unchanged = BackgroundErasing(0.3, 0.0)(dict(batch), generator(5))
    assert torch.equal(unchanged["clip"], clips.float())


# ----------------------------------------------------------------------------------------------
# ActorCutMix


def actor_masks(batch: int = 6, frames: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    masks = torch.zeros(batch, frames, size, size, dtype=torch.bool)
    g = generator(seed)
    for i in range(batch):
        top, left = (int(v) for v in torch.randint(0, size // 2, (2,), generator=g))
        masks[i, :, top:top + 5, left:left + 4] = True
    return masks


def test_actorcutmix_actor_pixels_from_the_source_clip_background_from_the_partner():
    clips, masks = random_clips().float(), actor_masks()
    acm = ActorCutMix(prob=1.0)
    draw = acm.draw(masks, generator())
    out = acm.apply(clips, masks, draw)
    assert draw.mixed and draw.changed.all() and draw.partner.tolist() == [5, 4, 3, 2, 1, 0]
    for i in range(6):
        inside = masks[i].unsqueeze(0).expand(3, -1, -1, -1)
        assert torch.equal(out[i][inside], clips[i][inside])
        assert torch.equal(out[i][~inside], clips[5 - i][~inside])


def test_actorcutmix_label_follows_the_actor_share_and_the_scene_the_background():
    clips, masks = random_clips(), actor_masks()
    places = torch.softmax(torch.randn(6, 3, generator=generator(2)), dim=1)
    batch = {"clip": clips, "label": torch.tensor([0, 1, 2, 0, 1, 2]), "actor_mask": masks, "place": places}
    out = ActorCutMix(prob=1.0)(batch, generator())
    share = masks.flatten(1).float().mean(1)
    torch.testing.assert_close(out["label_weight"], 1 - (1 - share) ** 4)
    assert out["label_b"].tolist() == [2, 1, 0, 2, 1, 0]
    assert torch.equal(out["place"], places.flip(0)) and "actor_mask" not in out

    logits = torch.randn(6, 3, generator=generator(3))
    soft = out["label_weight"][:, None] * F.one_hot(out["label"], 3) \
        + (1 - out["label_weight"][:, None]) * F.one_hot(out["label_b"], 3)
    expected = -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()
    torch.testing.assert_close(ActionLoss()(logits, out), expected)
    plain = {"label": out["label"]}
    torch.testing.assert_close(ActionLoss()(logits, plain), F.cross_entropy(logits, out["label"]))


def test_actorcutmix_leaves_clips_without_a_movable_actor_and_the_middle_of_an_odd_batch():
    clips, masks = random_clips(batch=5).float(), actor_masks(batch=5)
    masks[0] = False  # no actor
    masks[1] = True  # actor everywhere: no background to change
    draw = ActorCutMix(prob=1.0).draw(masks, generator())
    assert draw.changed.tolist() == [False, False, False, True, True]  # 2 is its own partner
    out = ActorCutMix.apply(clips, masks, draw)
    assert torch.equal(out[:3], clips[:3]) and torch.equal(draw.weight[:3], torch.ones(3))
    never = ActorCutMix(prob=0.0)({"clip": clips.clone(), "label": torch.arange(5), "actor_mask": masks}, generator())
    assert torch.equal(never["clip"], clips) and "label_weight" not in never


class FakeVideo:
    """Frames whose red channel is 255 exactly on the actor's pixels (so the two can be compared)."""

    def __init__(self, masks: np.ndarray):
        self.masks = masks

    def read(self, indices):
        frames = torch.zeros((len(indices), 3, *self.masks.shape[1:]), dtype=torch.uint8)
        frames[:, 0] = torch.from_numpy(self.masks[[i - 1 for i in indices]]).to(torch.uint8) * 255
        frames[:, 1] = 90
        return frames


@pytest.mark.parametrize("crop", ["corner", "random"])
def test_dataset_actor_mask_follows_crop_scale_and_flip(tmp_path, monkeypatch, crop):
    rng = np.random.default_rng(0)
    masks = np.kron(rng.random((8, 9, 12)) < 0.4, np.ones((1, 4, 4), dtype=bool))  # [8, 36, 48] blocks
    save_human_masks(tmp_path / "masks_train.npz", {("run", "v1"): masks}, "exact")
    monkeypatch.setattr(datasets_module, "open_video", lambda path, n_frames=None: FakeVideo(masks))
    entry = VideoEntry(path="unused", video_id="v1", label=0, class_dir="run", n_frames=8)
    scales = [1.0, 0.84, 0.7, 0.5]
    crop_transform = MultiScaleCornerCrop(scales, 16) if crop == "corner" else MultiScaleRandomCrop(scales, 16)
    dataset = ClipDataset([ClipSample(entry, tuple(range(1, 9)))], ["run"], Compose([crop_transform,
                          RandomHorizontalFlip()]), _Identity(), seed=3,
                          actor_masks=ActorMasks(masks=HumanMasks.from_path(str(tmp_path), "training")))
    flips = set()
    for epoch in range(12):
        item = dataset[(epoch, 0)]
        assert item["actor_mask"].shape == (8, 16, 16) and item["actor_mask"].dtype == torch.bool
        assert torch.equal(item["actor_mask"], item["clip"][0] >= 128)
        flips.add(dataset.spatial.transforms[1].flip)
    assert flips == {True, False}


class _Identity:
    def randomize(self, rng: random.Random) -> None:
        del rng

    def __call__(self, indices):
        return list(indices)


def test_actor_masks_from_boxes_use_the_score_threshold():
    detections = HumanDetections.from_dict({"run": {"v1": {
        1: {"human_boxes": np.array([[2, 3, 5, 6, 0.9], [10, 10, 12, 12, 0.2]], dtype=np.float32)},
        2: {"human_boxes": np.zeros((0, 5), dtype=np.float32)}}}})
    entry = VideoEntry(path="unused", video_id="v1", label=0, class_dir="run", n_frames=3)
    mask = ActorMasks(detections=detections, box_threshold=0.4).frames(entry, [1, 2, 3], 16, 16)
    expected = torch.zeros(3, 16, 16, dtype=torch.bool)
    expected[0, 3:7, 2:6] = True  # PIL's inclusive box; the 0.2 box is not an actor; frame 3 has no entry
    assert torch.equal(mask, expected)


# ----------------------------------------------------------------------------------------------
# FAME


def moving_square_clips(batch: int = 4, frames: int = 4, size: int = 32) -> torch.Tensor:
    """A static textured background with a bright square moving right by 2 pixels a frame."""
    g = generator(7)
    clips = torch.empty(batch, 3, frames, size, size)
    for i in range(batch):
        background = torch.rand(3, 1, size, size, generator=g) * 60 + 40
        clips[i] = background.expand(-1, frames, -1, -1)
        for t in range(frames):
            clips[i, :, t, 8:20, 6 + 2 * t:18 + 2 * t] = torch.tensor([250.0, 30.0, 30.0]).view(3, 1, 1)
    return clips


def test_fame_foreground_is_the_moving_square():
    clips = moving_square_clips()
    masks = foreground_masks(clips, fg_ratio=0.15)
    assert masks.shape == (4, 32, 32) and torch.all(masks.flatten(1).sum(1) == int(0.15 * 32 * 32))
    square = torch.zeros(32, 32, dtype=torch.bool)
    square[8:20, 6:24] = True  # everywhere the square passes
    inside = (masks.bool() & square).flatten(1).sum(1).float() / masks.flatten(1).sum(1)
    assert (inside > 0.95).all(), inside


def test_fame_merge_pixels_label_and_scene():
    clips = moving_square_clips()
    fame = Fame(fg_ratio=0.5, prob=1.0)
    draw = fame.draw(4, generator(4))
    merged, masks = fame.apply(clips, draw)
    for i in range(4):
        keep = masks[i].bool().expand(3, 4, -1, -1)
        assert torch.equal(merged[i][keep], clips[i][keep])
        assert torch.equal(merged[i][~keep], clips[int(draw.background[i])][~keep])
    places = torch.arange(4)
    out = fame({"clip": clips.to(torch.uint8), "label": torch.arange(4), "place": places}, generator(4))
    assert torch.equal(out["label"], torch.arange(4)) and "label_weight" not in out
    assert torch.equal(out["place"], draw.background)


# ----------------------------------------------------------------------------------------------
# StillMix and its frame reference


def test_stillmix_clip_is_the_clip_mixed_with_one_bank_frame_and_keeps_its_label():
    bank = random_clips(batch=5, seed=9)[:, :, 0]  # [5, 3, 16, 16] uint8 frames
    clips = random_clips()
    mix = StillMix(bank, prob=1.0, alpha1=200.0, alpha2=200.0)
    draw = mix.draw(6, generator(3))
    assert ((draw.weight > 0.4) & (draw.weight < 0.6)).all()  # Beta(200, 200) is about 0.5
    out = mix({"clip": clips.clone(), "label": torch.arange(6)}, generator(3))
    for i in range(6):
        lam, frame = float(draw.weight[i]), bank[int(draw.frame[i])].float()
        torch.testing.assert_close(out["clip"][i], lam * clips[i].float() + (1 - lam) * frame.unsqueeze(1))
    assert torch.equal(out["label"], torch.arange(6)) and "label_weight" not in out
    never = StillMix(bank, 0.0, 200.0, 200.0)({"clip": clips.clone(), "label": torch.arange(6)}, generator(3))
    assert torch.equal(never["clip"], clips.float())


class BrightnessReference:
    """A stand-in reference whose confidence grows with a frame's brightness."""

    def frame_logits(self, frames: torch.Tensor) -> torch.Tensor:
        brightness = frames.mean(dim=(1, 2, 3))
        return torch.stack([brightness * 0.1, torch.zeros_like(brightness)], dim=1)


class ClipList(torch.utils.data.Dataset):
    def __init__(self, clips: torch.Tensor):
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        del epoch

    def __getitem__(self, key):
        index = key[1] if isinstance(key, tuple) else key
        return {"clip": self.clips[index], "label": index % 2}


def test_stillmix_bank_holds_only_frames_the_reference_is_most_confident_on():
    levels = torch.arange(40, dtype=torch.uint8).view(10, 1, 4, 1, 1) * 5 + 20  # every frame its own brightness
    clips = levels.expand(10, 3, 4, 8, 8).contiguous()
    opt = parse_opts(["--root_path", "", "--is_mask_adv", "--batch_size", "3", "--stillmix_keep", "0.25",
                      "--stillmix_bank_size", "6", "--no_mean_norm", "--n_threads", "0"])
    setup = MethodSetup(opt=opt, device=torch.device("cpu"), train_dataset=ClipList(clips),
                        normalize=lambda c: c.float(), n_classes=2)
    bank = biased_frame_bank(BrightnessReference(), setup)
    assert bank.shape == (6, 3, 8, 8)
    brightest = sorted(levels.flatten().tolist())[-10:]  # the top quarter of 40 frames
    assert {int(frame[0, 0, 0]) for frame in bank} <= set(brightest)
    assert len({int(frame[0, 0, 0]) for frame in bank}) == 6


def test_frame_reference_trains_saves_loads_and_averages_frame_logits(tmp_path):
    clips = torch.randint(0, 100, (8, 3, 3, 8, 8), generator=generator(1), dtype=torch.uint8)
    clips[0::2, 0] += 120  # class 0: reddish textures; class 1: greenish ones
    clips[1::2, 1] += 120
    reference = train_frame_reference(ClipList(clips), 2, epochs=10, learning_rate=0.1, batch_size=4, seed=0,
                                      device=torch.device("cpu"), width=8)
    normalized = clips.float() - 100
    logits = reference.clip_logits(normalized)
    assert logits.argmax(1).tolist() == [0, 1] * 4
    per_frame = reference.frame_logits(frames_of(normalized)).view(8, 3, 2).mean(1)
    torch.testing.assert_close(logits, per_frame)
    reference.save(str(tmp_path / "ref.pth"))
    loaded = FrameReference.load(str(tmp_path / "ref.pth"), n_classes=2)
    torch.testing.assert_close(loaded.clip_logits(normalized), logits)
    with pytest.raises(SdnError, match="trained for 2 classes, this run has 3"):
        FrameReference.load(str(tmp_path / "ref.pth"), n_classes=3)
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SdnError, match="bad.pth"):
        FrameReference.load(str(tmp_path / "bad.pth"))


# ----------------------------------------------------------------------------------------------
# ALBAR


def small_model(seed: int = 0, **heads) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("resnet", 10, n_classes=3, sample_size=16, sample_duration=4, resnet_shortcut="A",
                       resnet_width=8, **heads)


def normalized_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = generator(seed)
    return torch.randn(4, 3, 4, 16, 16, generator=g), torch.tensor([0, 1, 2, 0])


def test_albar_static_clip_repeats_one_frame():
    clips, _ = normalized_batch()
    still = static_clips(clips, torch.tensor([2, 0, 3, 1]))
    for i, t in enumerate([2, 0, 3, 1]):
        assert torch.equal(still[i], clips[i, :, t:t + 1].expand(-1, 4, -1, -1))


def test_albar_terms_are_the_papers_with_their_signs():
    model = small_model().train()
    clips, labels = normalized_batch()
    weights = AlbarWeights(adversarial=1.0, entropy=4.25, gradient_penalty=10.0)
    added, metrics = albar_terms(model, clips, labels, weights)
    still = static_clips(clips, torch.full((4,), 2)).requires_grad_(True)  # the middle of 4 frames
    logits = model(still).action
    grads, = torch.autograd.grad(logits.sum(), still)
    penalty = grads.flatten(1).norm(dim=1).mean()
    expected = -F.cross_entropy(logits, labels) - 4.25 * entropy(logits) + 10.0 * penalty
    torch.testing.assert_close(added, expected, rtol=1e-4, atol=1e-5)
    assert penalty > 0 and float(metrics["grad penalty"][0]) == pytest.approx(float(penalty), rel=1e-4)


@pytest.mark.parametrize("term", ["adversarial", "entropy", "gradient_penalty"])
def test_a_step_on_each_albar_term_moves_it_the_way_the_paper_wants(term):
    """Negative CE: the static clip's CE rises; entropy maximisation: its entropy rises; the gradient
    penalty (added, not subtracted): the gradient norm falls, and it reaches the weights."""
    model = small_model(seed=1).eval()  # fixed BatchNorm statistics: only the step changes the output
    clips, labels = normalized_batch(seed=2)
    weights = AlbarWeights(**{name: float(name == term) for name in ("adversarial", "entropy", "gradient_penalty")})
    still = static_clips(clips, torch.full((4,), 2))

    def measure() -> float:
        x = still.clone().requires_grad_(True)
        logits = model(x).action
        return {"adversarial": F.cross_entropy(logits, labels), "entropy": entropy(logits),
                "gradient_penalty": gradient_penalty(logits, x, create_graph=False)}[term].item()

    before = measure()
    added, _ = albar_terms(model, clips, labels, weights)
    added.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.01 * p.grad
    after = measure()
    assert after > before if term in ("adversarial", "entropy") else after < before


def test_albar_adds_its_terms_to_the_first_step_of_any_mode():
    opt = parse_opts(["--root_path", "", "--is_place_adv", "--num_places_classes", "2", "--is_place_soft",
                      "--is_mask_entropy", "--debias", "albar", "--albar_static_frame", "middle"])
    objective = build_objective("full", opt)
    assert isinstance(objective, Albar) and isinstance(objective.inner, FullSDN)
    assert objective.extra_columns[-5:] == ["loss albar", "loss static", "entropy static", "grad penalty",
                                            "acc static"]
    model = small_model(with_place_head=True, with_hm_head=True, num_places_classes=2).train()
    clips, labels = normalized_batch()
    batches = [{"clip": clips, "label": labels, "place": torch.full((4, 2), 0.5)},
               {"clip": clips.flip(0), "label": labels, "is_masking": torch.ones(4, dtype=torch.bool)}]
    state = copy_state(model)
    wrapped = [step.loss for step in objective.steps(model, batches, epoch=1)]
    model.load_state_dict(state)
    plain = [step.loss for step in objective.inner.steps(model, batches, epoch=1)]
    model.load_state_dict(state)
    added, _ = albar_terms(model, clips, labels, objective.weights)
    assert len(wrapped) == 2
    torch.testing.assert_close(wrapped[0], plain[0] + added, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(wrapped[1], plain[1])
    assert not isinstance(build_objective("baseline", options()), Albar)
    assert isinstance(build_objective("baseline", options("--debias", "albar")).inner, Baseline)


def copy_state(model: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------------------------
# Options


def options(*flags: str):
    return parse_opts(["--root_path", "", "--is_mask_adv", *flags])


def test_bad_method_options_are_one_line_errors(tmp_path):
    with pytest.raises(SdnError, match="--human_masks_path DIR .* or --human_dets_path DIR"):
        options("--debias", "actorcutmix", "--human_dets_path", str(tmp_path / "none"))
    with pytest.raises(SdnError, match="not a directory"):
        options("--debias", "actorcutmix", "--human_masks_path", str(tmp_path / "none"))
    with pytest.raises(SdnError, match="--be_prob must be in"):
        options("--debias", "be", "--be_prob", "1.5")
    with pytest.raises(SdnError, match="--sample_duration >= 2"):
        options("--debias", "fame", "--sample_duration", "1")
    with pytest.raises(SdnError, match="--compile does not support"):
        options("--debias", "albar", "--compile")
    with pytest.raises(SdnError, match="--albar_entropy_weight must be >= 0"):
        options("--debias", "albar", "--albar_entropy_weight", "-1")
    with pytest.raises(SdnError, match="--stillmix_reference .*: no such file"):
        options("--debias", "stillmix", "--stillmix_reference", str(tmp_path / "none.pth"))
    assert options("--debias", "actorcutmix", "--human_dets_path", str(tmp_path)).debias == "actorcutmix"
    assert options().debias == "none"


# ----------------------------------------------------------------------------------------------
# Training: every method runs through the CLI and resumes exactly, mid-epoch too


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("methods") / "d"
    summary = generate(root, classes=2, train_per_class=4, val_per_class=1, ooc_per_class=0, frames=6, width=32,
                       height=32, seed=2, diving48=False)
    return root, summary["num_places"]


def common_flags(root: Path, result: Path, epochs: int) -> list[str]:
    return ["--root_path", "", "--video_path", str(root / "jpg"), "--annotation_path", str(root / "kinetics.json"),
            "--result_path", str(result), "--model_depth", "10", "--resnet_shortcut", "A", "--n_classes", "2",
            "--sample_size", "16", "--sample_duration", "4", "--batch_size", "4", "--val_batch_size", "4",
            "--n_threads", "0", "--n_epochs", str(epochs), "--checkpoint", "1", "--learning_rate", "0.01",
            "--no_progress", "--no_tensorboard", "--resnet_width", "16"]


METHOD_FLAGS = {
    "be": ["--debias", "be", "--be_prob", "1.0"],
    "actorcutmix": ["--debias", "actorcutmix", "--actorcutmix_prob", "1.0"],
    "fame": ["--debias", "fame", "--fame_prob", "1.0"],
    "stillmix": ["--debias", "stillmix", "--stillmix_prob", "1.0", "--stillmix_reference_epochs", "1",
                 "--stillmix_bank_size", "4", "--stillmix_reference_width", "4"],
    "albar": ["--debias", "albar", "--albar_static_frame", "random"],
}


def method_flags(name: str, root: Path) -> list[str]:
    extra = {"actorcutmix": ["--human_dets_path", str(root / "dets")]}.get(name, [])
    return [*METHOD_FLAGS[name], *extra]


def _stop_after(batch_number: int, monkeypatch) -> None:
    """Ask the trainer to stop (as SIGTERM does) once ``batch_number`` of epoch 1 has trained."""
    real = Trainer._optimizer_steps

    def step(self, batches, optimizer, epoch, number):
        result = real(self, batches, optimizer, epoch, number)
        if (epoch, number) == (1, batch_number):
            self.stop_signal = signal.SIGTERM
        return result

    monkeypatch.setattr(Trainer, "_optimizer_steps", step)


@pytest.mark.parametrize("name", list(METHOD_FLAGS))
def test_training_with_a_method_stops_mid_epoch_and_auto_resumes_exactly(synth, tmp_path, monkeypatch, name):
    root, _ = synth
    flags = ["--dataset", "kinetics", "--is_mask_adv", *method_flags(name, root)]
    assert train_cli.main([*common_flags(root, tmp_path / "whole", 2), *flags]) == 0
    with monkeypatch.context() as patch:
        _stop_after(1, patch)
        assert train_cli.main([*common_flags(root, tmp_path / "parts", 2), *flags]) == 128 + signal.SIGTERM
    assert train_cli.main([*common_flags(root, tmp_path / "parts", 2), *flags, "--auto_resume"]) == 0
    whole = read_checkpoint(str(tmp_path / "whole" / "save_2.pth"))["state_dict"]
    parts = read_checkpoint(str(tmp_path / "parts" / "save_2.pth"))["state_dict"]
    assert whole.keys() == parts.keys() and all(torch.equal(whole[k], parts[k]) for k in whole)
    assert (tmp_path / "whole" / "train_batch.log").read_text() == (tmp_path / "parts" / "train_batch.log").read_text()
    if name == "stillmix":  # trained once, in the first command of each run, and reused by the resume
        assert (tmp_path / "parts" / "stillmix_reference.pth").is_file()


def test_a_method_changes_training_but_not_validation(synth, tmp_path):
    root, _ = synth
    base = ["--dataset", "kinetics", "--is_mask_adv"]
    assert train_cli.main([*common_flags(root, tmp_path / "plain", 1), *base, "--no_train"]) == 0
    assert train_cli.main([*common_flags(root, tmp_path / "be", 1), *base, *method_flags("be", root), "--no_train"]) == 0
    assert (tmp_path / "plain" / "val.log").read_text() == (tmp_path / "be" / "val.log").read_text()
    assert train_cli.main([*common_flags(root, tmp_path / "plain_t", 1), *base, "--no_val"]) == 0
    assert train_cli.main([*common_flags(root, tmp_path / "be_t", 1), *base, *method_flags("be", root), "--no_val"]) == 0
    assert (tmp_path / "plain_t" / "train.log").read_text() != (tmp_path / "be_t" / "train.log").read_text()


@pytest.mark.parametrize("name", ["actorcutmix", "fame"])
def test_methods_combine_with_the_full_sdn_mode(synth, tmp_path, name):
    root, places = synth
    flags = ["--dataset", "kinetics_adv_msk", "--is_place_adv", "--is_place_soft", "--is_mask_entropy",
             "--num_places_classes", str(places), "--place_pred_path", str(root / "places"), "--human_dets_path",
             str(root / "dets"), "--mask_ratio", "1.0", "--warm_up_epochs", "0", *METHOD_FLAGS[name]]
    assert train_cli.main([*common_flags(root, tmp_path / name, 1), *flags]) == 0
    header = (tmp_path / name / "train.log").read_text().splitlines()[0].split("\t")
    assert "loss place" in header and "loss mask" in header
