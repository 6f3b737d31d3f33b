"""Scene-bias measurements of a trained model (``sdn analyze``, and ``sdn demo`` for every run).

Accuracy alone cannot tell a model that recognises the actor's motion from one that recognises
the background that usually comes with the action. These measurements can:

* **action accuracy** in context (the validation split) and out of context (the generator's
  ``kinetics_ooc.json``, where the scene is independent of the action): a scene-biased model
  drops out of context;
* **scene probe**: a linear classifier trained on the frozen pooled features of the training
  clips to predict the hard scene pseudo labels, evaluated on held-out clips. Its accuracy says
  how much scene information the representation keeps; RESOUND's representation bias is
  ``B_scene = log2(probe accuracy / chance)`` with chance = 1 / number of places (0 at chance);
* **human-masked clips** (every confident person box filled with the frame's mean colour): a
  model that uses the actor should be uncertain there (high entropy, low accuracy);
* **static clips** (the middle frame repeated): the actions here are motions, so accuracy above
  chance on a single frame is a shortcut through appearance or scene;
* **actor attention**: the share of the activation map inside the human boxes
  (:mod:`sdn.viz.attention`);
* **test splits** (``--split DIR``, :mod:`sdn.data.test_splits`): accuracy on each, and with a
  SCUBA split and its SCUFO twin the field's protocol (StillMix, ICCV 2023; ALBAR, ICLR 2025):
  SCUBA accuracy (the actor on unseen backgrounds: higher is better), SCUFO accuracy (one frame
  repeated, no motion: lower is better, chance is ideal) and Contra. Acc., the share of SCUBA videos
  predicted right *and* predicted differently on their SCUFO twin (a model that decides from the
  still frame gives the same answer on both).

Clips go through the validation pipeline (centre crop, deterministic windows), so results do not
depend on the seed; the probe is fitted full-batch from zero weights, so it is deterministic too.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from sdn.config import Options
from sdn.data.annotations import make_clips
from sdn.data.datasets import KINETICS_FAMILY, ClipDataset, get_training_set, get_validation_set
from sdn.data.detections import HumanDetections
from sdn.data.scene_labels import SceneLabels
from sdn.data.test_splits import TestSplit, read_split
from sdn.data.transforms import LoopPadding, TemporalCenterCrop, val_spatial_transform
from sdn.errors import SdnError
from sdn.viz.attention import BoxedClips, dataset_actor_attention
from sdn.viz.checkpoints import LoadedModel

LOG_BASE = 2  # B_scene in bits: 1.0 means the probe is twice as accurate as chance
PROBE_WEIGHT_DECAY = 1e-3  # L2 on the probe weights (standardised features): keeps LBFGS finite on separable data
PROBE_ITERATIONS = 200

View = Callable[[Tensor], Tensor]  # uint8 clips [B, 3, T, S, S] -> clips of the same layout


@dataclass(frozen=True)
class AnalysisSettings:
    """What to measure beyond in-context accuracy, and how to run it. ``None`` paths skip a measurement."""

    ooc_annotation_path: str | None = None
    place_pred_path: str | None = None
    human_dets_path: str | None = None
    splits: tuple[str, ...] = ()  # test split directories (sdn.data.test_splits)
    attention_method: str = "cam"
    attention_layer: str | None = None
    batch_size: int = 16
    workers: int = 0
    progress: bool = True


@dataclass
class Outputs:
    """Everything one pass over a dataset yields, in dataset order."""

    features: Tensor  # float32 [N, D], the pooled features the classifier sees
    logits: Tensor  # float32 [N, K]
    labels: Tensor  # int64 [N]
    videos: list[str]  # per clip, the video it comes from (for video-level accuracy)

    def video_probabilities(self) -> dict[str, Tensor]:
        """``{video: mean clip softmax}``: the original test's video score."""
        probabilities = F.softmax(self.logits, dim=1)
        grouped: dict[str, list[int]] = defaultdict(list)
        for index, video in enumerate(self.videos):
            grouped[video].append(index)
        return {video: probabilities[rows].mean(dim=0) for video, rows in grouped.items()}

    def video_labels(self) -> dict[str, int]:
        return {video: int(label) for video, label in zip(self.videos, self.labels.tolist())}


# ----------------------------------------------------------------------------------------------
# metrics


def clip_accuracy(logits: Tensor, labels: Tensor) -> float:
    """Share of clips whose top class is the label (NaN for no clips)."""
    return float((logits.argmax(dim=1) == labels).float().mean()) if len(labels) else math.nan


def video_accuracy(logits: Tensor, labels: Tensor, videos: list[str]) -> float:
    """Share of videos whose mean clip softmax peaks at the label (the original test's video score)."""
    outputs = Outputs(logits.new_zeros(len(labels), 0), logits, labels, videos)
    scores, truth = outputs.video_probabilities(), outputs.video_labels()
    if not scores:
        return math.nan
    return sum(int(score.argmax()) == truth[video] for video, score in scores.items()) / len(scores)


def contrast_accuracy(scuba: Outputs, scufo: Outputs) -> dict[str, Any]:
    """Contra. Acc.: the share of SCUBA videos predicted right whose SCUFO twin gets another prediction.

    Videos are paired by ``<label>/<key>`` (a SCUBA split and its SCUFO twin name their videos alike,
    in different folders); a video without a twin is left out and counted.
    """
    def by_key(scores: dict[str, Any]) -> dict[str, Any]:
        return {os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path)): value
                for path, value in scores.items()}

    scuba_scores, scufo_scores = by_key(scuba.video_probabilities()), by_key(scufo.video_probabilities())
    truth = by_key(scuba.video_labels())
    paired = [key for key in scuba_scores if key in scufo_scores]
    hits = []
    for key in paired:
        predicted = int(scuba_scores[key].argmax())
        hits.append(predicted == truth[key] and predicted != int(scufo_scores[key].argmax()))
    return {"videos_paired": len(paired), "videos_unpaired": len(scuba_scores) - len(paired),
            "contrast_accuracy": sum(hits) / len(hits) if hits else math.nan}


def mean_entropy(logits: Tensor) -> float:
    """Mean predictive entropy in nats (``log K`` for uniform predictions, 0 for certain ones)."""
    if not len(logits):
        return math.nan
    log_p = F.log_softmax(logits.double(), dim=1)
    return float(-(log_p.exp() * log_p).sum(dim=1).mean())


def static_clips(clips: Tensor) -> Tensor:
    """The middle frame of each clip ``[B, 3, T, S, S]`` repeated T times: no motion left."""
    middle = clips[:, :, clips.shape[2] // 2: clips.shape[2] // 2 + 1]
    return middle.expand_as(clips).contiguous()


def representation_bias(accuracy: float, chance: float, base: float = LOG_BASE) -> float | None:
    """RESOUND's ``log(accuracy / chance)``; None when the accuracy is 0 (the log is minus infinity)."""
    if not accuracy > 0:
        return None
    return math.log(accuracy / chance) / math.log(base)


class LinearProbe(nn.Module):
    """Multinomial logistic regression on standardised features (statistics of the fitting set)."""

    def __init__(self, mean: Tensor, std: Tensor, n_classes: int):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.linear = nn.Linear(mean.numel(), n_classes)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear((features - self.mean) / self.std)


def fit_linear_probe(features: Tensor, targets: Tensor, n_classes: int, *,
                     weight_decay: float = PROBE_WEIGHT_DECAY, iterations: int = PROBE_ITERATIONS) -> LinearProbe:
    """Fit the probe full-batch with L-BFGS from zero weights (deterministic: no seed, no batches)."""
    features = features.double()
    std = features.std(dim=0, unbiased=False)
    probe = LinearProbe(features.mean(dim=0), torch.where(std > 1e-8, std, torch.ones_like(std)), n_classes).double()
    optimizer = torch.optim.LBFGS(probe.linear.parameters(), max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(features), targets) + weight_decay * probe.linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return probe.eval()


def probe_accuracy(probe: LinearProbe, features: Tensor, targets: Tensor) -> float:
    with torch.no_grad():
        return clip_accuracy(probe(features.double()), targets)


# ----------------------------------------------------------------------------------------------
# data


def data_options(opt: Options) -> Options:
    """A copy of the options that reads plain clips: no scene labels or detections are needed to classify."""
    return opt.replace(dataset="kinetics" if opt.dataset in KINETICS_FAMILY else opt.dataset,
                       on_bad_sample="error")  # a measurement must not silently drop clips


def validation_clips(opt: Options, annotation_path: str | None = None) -> ClipDataset:
    """The validation windows as ``sdn train`` validates (``n_val_samples`` per video)."""
    opt = data_options(opt)
    if annotation_path is not None:
        opt = opt.replace(annotation_path=annotation_path)
    dataset = get_validation_set(opt, val_spatial_transform(opt.sample_size), LoopPadding(opt.sample_duration))
    return _non_empty(dataset, opt.annotation_path, "validation")


def training_clips(opt: Options) -> ClipDataset:
    """One centred window per training video, without augmentation: the probe's fitting set."""
    opt = data_options(opt)
    dataset = get_training_set(opt, val_spatial_transform(opt.sample_size), TemporalCenterCrop(opt.sample_duration))
    return _non_empty(dataset, opt.annotation_path, "training")


def _non_empty(dataset: ClipDataset, path: str, subset: str) -> ClipDataset:
    if len(dataset) == 0:
        raise SdnError(f"{path}: the {subset} subset has no clips")
    return dataset


def split_clips(opt: Options, split: TestSplit, class_names: list[str]) -> ClipDataset:
    """A test split's clips through the validation pipeline; its classes must be the model's, in order."""
    if class_names and split.class_names != class_names:
        raise SdnError(f"{split.annotation_path}: the split's labels {split.class_names} are not the model's classes "
                       f"{class_names}")
    samples = make_clips(split.entries, opt.n_val_samples, opt.sample_duration)
    dataset = ClipDataset(samples, split.class_names, val_spatial_transform(opt.sample_size),
                          LoopPadding(opt.sample_duration), seed=opt.manual_seed)
    return _non_empty(dataset, split.annotation_path, "validation")


def read_splits(directories: Sequence[str]) -> dict[str, TestSplit]:
    """The splits by name; two folders with the same split name are an error (their results would collide)."""
    splits: dict[str, TestSplit] = {}
    for directory in directories:
        split = read_split(directory)
        if split.name in splits:
            raise SdnError(f"{directory}: split {split.name!r} was already given ({splits[split.name].directory})")
        splits[split.name] = split
    return splits


def human_masked_clips(dataset: ClipDataset, detections: HumanDetections) -> ClipDataset:
    """``dataset``'s windows of the videos with enough detections (the training filter), every person masked."""
    samples = [s for s in dataset.samples if detections.has(s.video.class_dir, s.video.video_id)
               and detections.has_enough_detections(s.video.class_dir, s.video.video_id, s.video.n_frames)]
    if not samples:
        raise SdnError(f"{detections.path}: no validation video has enough confident human detections to mask")
    return ClipDataset(samples, dataset.class_names, dataset.spatial, dataset.temporal, seed=dataset.seed,
                       detections=detections, mask_mode="human", mask_ratio=1.0)


def _stack(items: list[dict[str, Any]]) -> dict[str, Tensor]:
    return {"clip": torch.stack([item["clip"] for item in items]),
            "label": torch.as_tensor([item["label"] for item in items])}


@torch.no_grad()
def collect(loaded: LoadedModel, dataset: ClipDataset, settings: AnalysisSettings, description: str,
            views: dict[str, View] | None = None) -> dict[str, Outputs]:
    """One pass over ``dataset``; each view (default: the clip as it is) gets its own forward pass.

    Views share the decoded clips, so e.g. static clips cost no extra reading.
    """
    views = views or {"clip": lambda clips: clips}
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=False, num_workers=settings.workers,
                        collate_fn=_stack)
    parts: dict[str, list[tuple[Tensor, Tensor]]] = {name: [] for name in views}
    labels = []
    for batch in tqdm(loader, desc=description, unit="batch", disable=not settings.progress, leave=False):
        labels.append(batch["label"])
        for name, view in views.items():
            features = loaded.model.pooled_features(loaded.prepare(view(batch["clip"])))
            parts[name].append((features.cpu(), loaded.model.get_classifier()(features).cpu()))
    videos = [sample.video.path for sample in dataset.samples]
    return {name: Outputs(torch.cat([f for f, _ in chunks]), torch.cat([l for _, l in chunks]), torch.cat(labels),
                          videos) for name, chunks in parts.items()}


# ----------------------------------------------------------------------------------------------
# measurements


def accuracy_summary(outputs: Outputs) -> dict[str, Any]:
    return {"clips": len(outputs.labels), "videos": len(set(outputs.videos)),
            "clip_accuracy": clip_accuracy(outputs.logits, outputs.labels),
            "video_accuracy": video_accuracy(outputs.logits, outputs.labels, outputs.videos),
            "mean_entropy": mean_entropy(outputs.logits)}


def scene_targets(dataset: ClipDataset, labels: SceneLabels) -> Tensor:
    """The hard scene pseudo label of each clip's video."""
    missing = [s.video for s in dataset.samples if not labels.has(s.video.class_dir, s.video.video_id)]
    if missing:
        raise SdnError(f"{labels.description}: no scene label for class {missing[0].class_dir!r}, "
                       f"video {missing[0].video_id!r} ({missing[0].path})")
    return torch.as_tensor([labels.target(s.video.class_dir, s.video.video_id, False) for s in dataset.samples])


def probe_targets(place_pred_path: str, train_set: ClipDataset,
                  evaluated: dict[str, ClipDataset]) -> tuple[int, Tensor, dict[str, Tensor]]:
    """(places, training targets, targets per evaluated split), read before any forward pass so
    that a video without a scene label fails at once, not after minutes of feature extraction."""
    train_labels = SceneLabels.from_path(place_pred_path, "training")
    held_out = SceneLabels.from_path(place_pred_path, "validation")
    return (train_labels.num_places, scene_targets(train_set, train_labels),
            {split: scene_targets(dataset, held_out) for split, dataset in evaluated.items()})


def scene_probe(places: int, train: Outputs, train_targets: Tensor, evaluated: dict[str, Outputs],
                targets: dict[str, Tensor]) -> dict[str, Any]:
    """Fit the probe on the training clips' features; accuracy and B_scene on each evaluated split."""
    probe = fit_linear_probe(train.features, train_targets, places)
    chance = 1.0 / places
    result: dict[str, Any] = {"places": places, "chance": chance, "log_base": LOG_BASE,
                              "definition": f"B_scene = log{LOG_BASE}(probe accuracy / chance), chance = 1/places",
                              "train_clips": len(train.labels),
                              "train_accuracy": probe_accuracy(probe, train.features, train_targets)}
    for split, outputs in evaluated.items():
        accuracy = probe_accuracy(probe, outputs.features, targets[split])
        result[split] = {"clips": len(outputs.labels), "accuracy": accuracy,
                         "b_scene": representation_bias(accuracy, chance)}
    return result


def actor_attention(loaded: LoadedModel, dataset: ClipDataset, detections: HumanDetections,
                    settings: AnalysisSettings) -> dict[str, Any]:
    summary = dataset_actor_attention(
        loaded.model, BoxedClips(dataset, detections), loaded.prepare, method=settings.attention_method,
        layer=settings.attention_layer, target="label", batch_size=settings.batch_size,
        device=next(loaded.model.parameters()).device, num_workers=settings.workers, progress=settings.progress)
    return {"method": settings.attention_method, "layer": settings.attention_layer, "target": "label",
            "mean": summary.mean, "clips_counted": summary.counted, "clips": len(summary.shares)}


def measure_splits(loaded: LoadedModel, splits: dict[str, tuple[TestSplit, ClipDataset]],
                   settings: AnalysisSettings) -> dict[str, Any]:
    """Accuracy on every split; Contra. Acc. when both ``scuba`` and ``scufo`` are among them."""
    outputs = {name: collect(loaded, dataset, settings, f"split {name}")["clip"]
               for name, (_, dataset) in splits.items()}
    return split_results({name: split for name, (split, _) in splits.items()}, outputs)


def split_results(splits: dict[str, TestSplit], outputs: dict[str, Outputs]) -> dict[str, Any]:
    """Accuracy on every split; Contra. Acc. when both ``scuba`` and ``scufo`` are among them."""
    result: dict[str, Any] = {name: {"directory": split.directory, "description": split.description,
                                     **accuracy_summary(outputs[name])} for name, split in splits.items()}
    if "scuba" in outputs and "scufo" in outputs:
        result["contrast"] = {"definition": "share of SCUBA videos predicted right whose SCUFO twin is predicted "
                              "differently", **contrast_accuracy(outputs["scuba"], outputs["scufo"])}
    return result


def analyze(loaded: LoadedModel, opt: Options, settings: AnalysisSettings) -> dict[str, Any]:
    """Every measurement the settings allow, as a JSON-ready dict (NaN where a value is undefined)."""
    datasets = {"in_context": validation_clips(opt)}
    if settings.ooc_annotation_path:
        datasets["out_of_context"] = validation_clips(opt, settings.ooc_annotation_path)
    if settings.place_pred_path:
        train_set = training_clips(opt)
        places, train_targets, targets = probe_targets(settings.place_pred_path, train_set, datasets)
    if settings.human_dets_path:
        detections = HumanDetections.from_path(settings.human_dets_path, "validation")
        masked = human_masked_clips(datasets["in_context"], detections)
    splits = {name: (split, split_clips(opt, split, loaded.class_names))
              for name, split in read_splits(settings.splits).items()}
    passes = collect(loaded, datasets["in_context"], settings, "in context",
                     {"clip": lambda c: c, "static": static_clips})
    outputs = {"in_context": passes["clip"]}
    result: dict[str, Any] = {
        "checkpoint": loaded.path, "arch": loaded.opt.arch, "classes": loaded.class_names,
        "chance_accuracy": 1.0 / loaded.n_outputs,
        "in_context": {"annotation_path": opt.annotation_path, **accuracy_summary(passes["clip"])},
        "static": {"split": "in_context", **accuracy_summary(passes["static"])},
    }
    if settings.ooc_annotation_path:
        outputs["out_of_context"] = collect(loaded, datasets["out_of_context"], settings, "out of context")["clip"]
        result["out_of_context"] = {"annotation_path": settings.ooc_annotation_path,
                                    **accuracy_summary(outputs["out_of_context"])}
    if settings.place_pred_path:
        train = collect(loaded, train_set, settings, "probe features")["clip"]
        result["scene_probe"] = scene_probe(places, train, train_targets, outputs, targets)
    if splits:
        result["splits"] = measure_splits(loaded, splits, settings)
    if settings.human_dets_path:
        result["human_masked"] = {"split": "in_context", "max_entropy": math.log(loaded.n_outputs),
                                  **accuracy_summary(collect(loaded, masked, settings, "human masked")["clip"])}
        result["actor_attention"] = actor_attention(loaded, datasets["in_context"], detections, settings)
    return result


# ----------------------------------------------------------------------------------------------
# presentation


def json_ready(value: Any) -> Any:
    """NaN (an undefined measurement) becomes null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value


def _percent(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"


def _number(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def table_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(measure, value) pairs for the printed table, in reading order."""
    rows = [("action accuracy, in context (clip / video)",
             f"{_percent(result['in_context']['clip_accuracy'])} / {_percent(result['in_context']['video_accuracy'])}")]
    if "out_of_context" in result:
        ooc = result["out_of_context"]
        rows.append(("action accuracy, out of context (clip / video)",
                     f"{_percent(ooc['clip_accuracy'])} / {_percent(ooc['video_accuracy'])}"))
    rows.append(("chance accuracy", _percent(result["chance_accuracy"])))
    if "scene_probe" in result:
        probe = result["scene_probe"]
        for split in ("in_context", "out_of_context"):
            if split in probe:
                name = split.replace("_", " ")
                rows.append((f"scene probe accuracy, {name} (chance {_percent(probe['chance'])})",
                             _percent(probe[split]["accuracy"])))
                rows.append((f"B_scene, {name} (log{probe['log_base']})", _number(probe[split]["b_scene"])))
    if "human_masked" in result:
        masked = result["human_masked"]
        rows.append(("human-masked clips: accuracy", _percent(masked["clip_accuracy"])))
        rows.append((f"human-masked clips: mean entropy (max {masked['max_entropy']:.3f} nats)",
                     _number(masked["mean_entropy"])))
    rows.append(("static clips: accuracy", _percent(result["static"]["clip_accuracy"])))
    for name, split in result.get("splits", {}).items():
        if name == "contrast":
            rows.append(("Contra. Acc. (SCUBA right, SCUFO twin predicted differently)",
                         _percent(split["contrast_accuracy"])))
        else:
            rows.append((f"split {name}: accuracy (clip / video)",
                         f"{_percent(split['clip_accuracy'])} / {_percent(split['video_accuracy'])}"))
    for name, split in result.get("static_reference", {}).get("splits", {}).items():
        value = split["contrast_accuracy"] if name == "contrast" else split["clip_accuracy"]
        rows.append((f"static reference (2D frame model): {'Contra. Acc.' if name == 'contrast' else name}",
                     _percent(value)))
    if "actor_attention" in result:
        attention = result["actor_attention"]
        rows.append((f"actor attention ({attention['method']}, share of map in human boxes)",
                     _number(attention["mean"])))
    return rows


def format_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
