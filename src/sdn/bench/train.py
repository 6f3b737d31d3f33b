"""Training speed: the step of each speed option, and what a full-SDN iteration costs.

Both parts run sdn's own training code on synthetic uint8 batches: options parsed by the
``sdn train`` parser, the model from ``build_sdn_model``, the objective from ``build_objective``
(whose ``batch_keys`` say what the synthetic batches carry), the optimizers from
``OptimizerSchedule``, the device-side normalisation from ``input_preparation``, the compile
wrapper from ``training_wrapper``, and one iteration is ``Trainer.step`` (moving and normalising
the batches, autocast, zero_grad, backward, optimizer step for every step of the objective, the
logged metrics). Only the data loader is left out (part (a)
measures it), so the numbers are those of the model, the losses and the optimizer.

* ``train``: one baseline iteration per speed option (a ``+``-joined name of ``sdn train`` options:
  ``fp32`` for none, ``channels_last``, ``bf16``/``fp16`` for ``--amp``, ``cudnn_benchmark``,
  ``compile``), as clips/s and achieved GFLOP/s. FLOPs are counted once, on the fp32 model, by
  ``torch.utils.flop_counter.FlopCounterMode`` over a forward and backward pass (it counts
  convolutions and matrix products, 2 FLOPs per multiply-add; BatchNorm, activations and the
  optimizer are not counted). The reference is the measured peak of a large float32 matmul
  (the best round), timed in the same rounds; the bf16 matmul peak is shown beside it.
* ``sdn-cost``: one iteration of each mode (baseline: one step; scene-adversarial: one step with
  the place head; full SDN: the unmasked scene-adversarial step, then the masked step) with the
  same options, as time per iteration relative to the baseline.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from sdn.bench.common import Panel, Samples, interleaved, number, table, target
from sdn.errors import SdnError

EPOCH = 1  # with --warm_up_epochs 0 every mode trains all its parameters from epoch 1
OPTION_FLAGS = {
    "fp32": [],
    "channels_last": ["--channels_last"],
    "bf16": ["--amp", "bf16"],
    "fp16": ["--amp", "fp16"],
    "cudnn_benchmark": ["--cudnn_benchmark"],
    "compile": ["--compile"],
}
CPU_VARIANTS = ["fp32", "channels_last", "bf16", "bf16+channels_last"]
CPU_COMPILE_VARIANTS = ["compile", "compile+bf16"]
CUDA_VARIANTS = ["fp32", "cudnn_benchmark", "channels_last+cudnn_benchmark", "bf16+cudnn_benchmark",
                 "fp16+cudnn_benchmark", "bf16+channels_last+cudnn_benchmark", "fp16+channels_last+cudnn_benchmark"]
CUDA_COMPILE_VARIANTS = ["compile+cudnn_benchmark", "compile+bf16+channels_last+cudnn_benchmark"]
MODES = ("baseline", "place_adv", "full")
MODE_FLAGS = {  # the README's flags of each mode
    "baseline": ["--is_mask_adv"],
    "place_adv": ["--is_place_adv", "--is_mask_adv", "--is_place_soft", "--num_place_hidden_layers", "3"],
    "full": ["--is_place_adv", "--is_place_soft", "--is_mask_entropy", "--num_place_hidden_layers", "3",
             "--num_human_mask_adv_hidden_layers", "1", "--alpha", "0.5", "--mask_ratio", "1.0",
             "--slower_place_mlp", "--not_replace_last_fc"],
}
MODE_NAMES = {"baseline": "baseline", "place_adv": "scene-adversarial", "full": "full SDN"}
FP32_PEAK, BF16_PEAK = "matmul fp32", "matmul bf16"


@dataclass
class TrainSettings:
    model: str = "resnet"
    model_depth: int = 18
    resnet_shortcut: str = "A"
    sample_size: int = 112
    sample_duration: int = 16
    batch_size: int = 4
    n_classes: int = 200
    num_places_classes: int = 365
    rounds: int = 3
    statistic: str = "best"
    device: str = "cpu"
    variants: list[str] = field(default_factory=list)  # empty: those that apply to the device
    compile: bool = False
    cost_variant: str = "fp32"
    matmul_size: int = 0  # 0: 2048 on the CPU, 8192 on CUDA
    seed: int = 1


def option_flags(variant: str, device: str) -> list[str]:
    """The ``sdn train`` flags of a ``+``-joined variant name; fp16 needs CUDA."""
    flags: list[str] = []
    for token in variant.split("+"):
        if token not in OPTION_FLAGS:
            raise SdnError(f"speed option {token!r} in {variant!r}: expected {', '.join(OPTION_FLAGS)} joined by '+'")
        if token == "fp16" and device != "cuda":
            raise SdnError(f"variant {variant!r}: fp16 autocast needs a CUDA device (on the CPU use bf16)")
        flags += OPTION_FLAGS[token]
    if flags.count("--amp") > 1:
        raise SdnError(f"variant {variant!r}: choose one of bf16 and fp16")
    return flags


def default_variants(device: str, with_compile: bool) -> list[str]:
    if device == "cuda":
        return CUDA_VARIANTS + (CUDA_COMPILE_VARIANTS if with_compile else [])
    return CPU_VARIANTS + (CPU_COMPILE_VARIANTS if with_compile else [])


def runnable_variants(variants: list[str], device: torch.device) -> tuple[list[str], list[str]]:
    """The variants this device can run, and a note for each one skipped (bf16 on a CPU that would emulate it)."""
    from sdn.engine.precision import amp_problem

    kept, notes = [], []
    for variant in variants:
        problem = next((amp_problem(token, device) for token in variant.split("+") if token in ("bf16", "fp16")), None)
        if problem:
            notes.append(f"skipped {variant}: {problem}")
        else:
            kept.append(variant)
    return kept, notes


def training_options(s: TrainSettings, mode: str, variant: str) -> argparse.Namespace:
    from sdn.config import build_parser, resolve

    argv = ["--root_path", "", "--model", s.model, "--model_depth", str(s.model_depth),
            "--resnet_shortcut", s.resnet_shortcut, "--sample_size", str(s.sample_size),
            "--sample_duration", str(s.sample_duration), "--batch_size", str(s.batch_size),
            "--n_classes", str(s.n_classes), "--n_finetune_classes", str(s.n_classes),
            "--num_places_classes", str(s.num_places_classes), "--learning_rate", "0.001", "--new_layer_lr", "0.001",
            "--warm_up_epochs", "0", "--weight_decay", "1e-5", "--manual_seed", str(s.seed), "--no_progress",
            "--no_tensorboard", *MODE_FLAGS[mode], *option_flags(variant, s.device)]
    return resolve(build_parser().parse_args(argv))


def synthetic_batches(s: TrainSettings, batch_keys: tuple[tuple[str, ...], ...],
                      device: torch.device) -> list[dict[str, Any]]:
    """Uint8 clips and targets as the datasets collate them, already on the device (loading is part (a)):
    one batch per loader of the objective, with the entries it reads."""
    generator = torch.Generator().manual_seed(s.seed)
    batches = []
    for keys in batch_keys:
        shape = (s.batch_size, 3, s.sample_duration, s.sample_size, s.sample_size)
        batch: dict[str, Any] = {
            "clip": torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator),
            "label": torch.randint(0, s.n_classes, (s.batch_size,), generator=generator),
        }
        if "place" in keys:
            logits = torch.randn(s.batch_size, s.num_places_classes, generator=generator)
            batch["place"] = torch.softmax(logits, dim=1)
        if "is_masking" in keys:
            batch["is_masking"] = torch.ones(s.batch_size, dtype=torch.bool)
        batches.append({key: value.to(device) for key, value in batch.items()})
    return batches


class Iteration:
    """One training iteration of a mode with one speed option, through sdn's Trainer."""

    def __init__(self, s: TrainSettings, mode: str, variant: str, device: torch.device):
        from sdn.data.transforms import clip_normalize, input_preparation
        from sdn.engine.objectives import build_objective
        from sdn.engine.optim import OptimizerConfig, OptimizerSchedule
        from sdn.engine.trainer import Trainer, TrainerConfig
        from sdn.engine.wrapping import training_wrapper
        from sdn.models import ModelConfig, build_sdn_model

        self.opt = opt = training_options(s, mode, variant)
        self.device, self.mode, self.variant = device, mode, variant
        torch.manual_seed(s.seed)
        model = build_sdn_model(ModelConfig.from_options(opt)).to(device)
        if opt.channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        self.objective = build_objective(mode, opt)
        schedule = OptimizerSchedule(model, OptimizerConfig.from_options(opt))
        self.prepare = input_preparation(clip_normalize(opt), device, opt.channels_last)
        self.trainer = Trainer(model=model, objective=self.objective, schedule=schedule,
                               config=TrainerConfig.from_options(opt), device=device, prepare=self.prepare,
                               class_names=[str(i) for i in range(s.n_classes)],
                               train_model=training_wrapper(model, device=device, compile=opt.compile))
        self.optimizer = schedule.optimizer_for(EPOCH)
        self.batches = synthetic_batches(s, self.objective.batch_keys, device)
        self.clips = sum(batch["clip"].shape[0] for batch in self.batches)

    def moved(self) -> list[dict[str, Any]]:
        from sdn.engine.trainer import move_batch

        return [move_batch(dict(batch), self.device, self.prepare) for batch in self.batches]

    def __call__(self) -> None:
        torch.backends.cudnn.benchmark = bool(self.opt.cudnn_benchmark)
        self.trainer.step(self.batches, EPOCH, 1)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def host_syncs(self) -> int | None:
        """Times one iteration makes the host wait for the GPU (``.item()``, device-to-host copies):
        counted from CUDA's sync debug warnings over one step; None off CUDA, where there is no queue."""
        if self.device.type != "cuda":
            return None
        import warnings

        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.trainer.step(self.batches, EPOCH, 1)
        finally:
            torch.cuda.set_sync_debug_mode(previous)
        return sum("synchronizing" in str(warning.message) for warning in caught)

    def count_flops(self) -> float:
        """FLOPs of the iteration's forward and backward passes (fp32, uncompiled model)."""
        from torch.utils.flop_counter import FlopCounterMode

        model = self.trainer.model
        with FlopCounterMode(display=False) as counter:
            for step in self.objective.steps(model, self.moved(), EPOCH):
                step.loss.backward()
        self.optimizer.zero_grad()
        return float(counter.get_total_flops())


def matmul_run(device: torch.device, dtype: torch.dtype, size: int) -> tuple[Callable[[], None], float]:
    """A callable doing ``repeats`` size x size matmuls, and the FLOPs it does."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    repeats = 10 if device.type == "cuda" else 1

    def run() -> None:
        for _ in range(repeats):
            torch.mm(a, b, out=out)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return run, 2.0 * size ** 3 * repeats


def _device(s: TrainSettings) -> torch.device:
    if s.device == "cuda":
        if not torch.cuda.is_available():
            raise SdnError("--device cuda: no CUDA device is available")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _warmup(name: str) -> int:
    """Calls before timing: the first steps allocate gradients and momentum buffers and let oneDNN or
    cuDNN pick and build kernels; compiling happens on the first call, the third shows no recompilation."""
    return 3 if "compile" in name.split("+") else 2


def _progress(prefix: str, progress: Callable[[str], None] | None) -> Callable[[str], None] | None:
    return (lambda message: progress(f"{prefix}: {message}")) if progress else None


# ----------------------------------------------------------------------------------------------
# (b) the speed options


def run_train(s: TrainSettings, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    device = _device(s)
    variants = list(dict.fromkeys(["fp32", *(s.variants or default_variants(s.device, s.compile))]))
    for variant in variants:
        option_flags(variant, s.device)  # reject a bad name before building anything
    variants, notes = runnable_variants(variants, device)
    if progress:
        progress(f"train: building {len(variants)} models ({', '.join(variants)})")
    iterations = {variant: Iteration(s, "baseline", variant, device) for variant in variants}
    flops = iterations["fp32"].count_flops()
    size = s.matmul_size or (8192 if device.type == "cuda" else 2048)
    peaks = {FP32_PEAK: matmul_run(device, torch.float32, size), BF16_PEAK: matmul_run(device, torch.bfloat16, size)}
    runs: dict[str, Callable[[], Any]] = {**iterations, **{name: run for name, (run, _) in peaks.items()}}
    warmup = {name: _warmup(name) if name in iterations else 1 for name in runs}
    samples = interleaved(runs, s.rounds, warmup=warmup, progress=_progress("train", progress))
    peak = {name: work / samples[name].seconds("best") / 1e9 for name, (_, work) in peaks.items()}

    rows = {}
    for variant in variants:
        seconds = samples[variant].seconds(s.statistic)
        rows[variant] = {
            "flags": option_flags(variant, s.device),
            "s_per_step": seconds,
            "clips_per_s": s.batch_size / seconds,
            "gflop_per_s": flops / seconds / 1e9,
            "of_fp32_peak": flops / seconds / 1e9 / peak[FP32_PEAK],
            "host_syncs": iterations[variant].host_syncs(),
            "rounds": samples[variant].as_dict(),
        }
    reference = rows["fp32"]["clips_per_s"]
    for row in rows.values():
        row["vs_fp32"] = row["clips_per_s"] / reference
    fastest = max(rows, key=lambda name: rows[name]["clips_per_s"])
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        notes.append("fp32 convolutions use TF32 tensor cores (PyTorch's default "
                     "torch.backends.cudnn.allow_tf32=True); the fp32 matmul peak does not")
    return {
        "notes": notes,
        "settings": _settings_dict(s),
        "threads": torch.get_num_threads(),
        "gflop_per_step": flops / 1e9,
        "matmul_size": size,
        "peak_gflop_per_s": {"fp32": peak[FP32_PEAK], "bf16": peak[BF16_PEAK]},
        "peak_rounds": {name: samples[name].as_dict() for name in peaks},
        "variants": rows,
        "fastest": fastest,
        "targets": [target(f"train: fastest option ({fastest}) vs fp32 eager", rows[fastest]["vs_fp32"], 1.1,
                           at_least=True)] if len(rows) > 1 else [],  # fp32 alone: nothing to compare
    }


def render_train(result: dict[str, Any]) -> str:
    s = result["settings"]
    peak = result["peak_gflop_per_s"]
    head = (f"(b) training step, {s['device']}, {result['threads']} threads: {s['model']}-{s['model_depth']} "
            f"(shortcut {s['resnet_shortcut']}), batch {s['batch_size']} x [3, {s['sample_duration']}, "
            f"{s['sample_size']}, {s['sample_size']}] uint8, {number(result['gflop_per_step'])} GFLOP per step "
            f"(forward + backward); {s['statistic']} of {s['rounds']} interleaved rounds\n"
            f"measured matmul peak ({result['matmul_size']}^2, best round): fp32 {number(peak['fp32'])} GFLOP/s, "
            f"bf16 {number(peak['bf16'])} GFLOP/s")
    rows = [[name, f"{row['s_per_step']:.3f}", number(row["clips_per_s"]), number(row["gflop_per_s"]),
             f"{100 * row['of_fp32_peak']:.0f}%", f"{row['vs_fp32']:.2f}x",
             "n/a" if row.get("host_syncs") is None else str(row["host_syncs"])]
            for name, row in result["variants"].items()]
    notes = "".join(f"\nnote: {note}" for note in result.get("notes", []))
    columns = ["option", "s/step", "clips/s", "GFLOP/s", "of fp32 peak", "vs fp32 eager", "host syncs/step"]
    return head + "\n" + table(columns, rows) + notes


def panel_train(result: dict[str, Any]) -> Panel:
    rows = result["variants"]
    names = list(rows)
    return Panel(
        title=f"(b) training step, clips/s ({result['settings']['device']}, {result['threads']} threads, "
              f"batch {result['settings']['batch_size']})",
        xlabel="clips/s",
        labels=names,
        values=[rows[n]["clips_per_s"] for n in names],
        notes=[f"{rows[n]['vs_fp32']:.2f}x, {number(rows[n]['gflop_per_s'])} GFLOP/s" for n in names],
    )


# ----------------------------------------------------------------------------------------------
# (c) the cost of a full-SDN iteration


def run_sdn_cost(s: TrainSettings, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    device = _device(s)
    option_flags(s.cost_variant, s.device)
    if progress:
        progress(f"sdn-cost: building the {', '.join(MODES)} models ({s.cost_variant})")
    iterations = {mode: Iteration(s, mode, s.cost_variant, device) for mode in MODES}
    flops = {mode: iteration.count_flops() for mode, iteration in iterations.items()}
    samples: dict[str, Samples] = interleaved(dict(iterations), s.rounds, warmup=_warmup(s.cost_variant),
                                              progress=_progress("sdn-cost", progress))
    baseline = samples["baseline"].seconds(s.statistic)
    rows = {}
    for mode, iteration in iterations.items():
        seconds = samples[mode].seconds(s.statistic)
        rows[mode] = {
            "name": MODE_NAMES[mode],
            "optimizer_steps": iterations[mode].objective.n_loaders,
            "clips_per_iteration": iteration.clips,
            "s_per_iteration": seconds,
            "gflop_per_iteration": flops[mode] / 1e9,
            "vs_baseline": seconds / baseline,
            "rounds": samples[mode].as_dict(),
        }
    return {
        "settings": _settings_dict(s),
        "threads": torch.get_num_threads(),
        "modes": rows,
        "targets": [target("sdn-cost: full-SDN iteration vs baseline iteration", rows["full"]["vs_baseline"], 2.2,
                           at_least=False)],
    }


def render_sdn_cost(result: dict[str, Any]) -> str:
    s = result["settings"]
    head = (f"(c) cost of one iteration per mode, {s['device']}, option {s['cost_variant']}: "
            f"{s['model']}-{s['model_depth']}, batch {s['batch_size']} per loader; {s['statistic']} of "
            f"{s['rounds']} interleaved rounds")
    rows = [[row["name"], row["optimizer_steps"], row["clips_per_iteration"], number(row["gflop_per_iteration"]),
             f"{row['s_per_iteration']:.3f}", f"{row['vs_baseline']:.2f}x"]
            for row in result["modes"].values()]
    return head + "\n" + table(["mode", "steps", "clips", "GFLOP", "s/iteration", "vs baseline"], rows)


def panel_sdn_cost(result: dict[str, Any]) -> Panel:
    rows = result["modes"]
    return Panel(
        title=f"(c) one iteration per mode ({result['settings']['cost_variant']})",
        xlabel="seconds per iteration",
        labels=[row["name"] for row in rows.values()],
        values=[row["s_per_iteration"] for row in rows.values()],
        notes=[f"{row['vs_baseline']:.2f}x baseline" for row in rows.values()],
    )


def _settings_dict(s: TrainSettings) -> dict[str, Any]:
    return {key: (list(value) if isinstance(value, list) else value) for key, value in vars(s).items()}
