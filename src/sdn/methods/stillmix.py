"""StillMix (Li et al., "Mitigating and Evaluating Static Bias of Action Representations in the
Background and the Foreground", ICCV 2023).

A 2D reference network trained on single frames finds the frames whose static content alone
predicts a class with confidence: those carry the static bias. Such frames are mixed into
other training clips, ``x' = λ x + (1 - λ) f`` with the same ``f`` in every frame, and the
label is kept. The biased still image now accompanies every class, so it stops predicting one.

How sdn does it (defaults from the official code and its HMDB-51 configuration):

1. the reference network (:mod:`sdn.methods.frame_reference`) is trained on the frames of the
   training clips, inside the same ``sdn train`` command, and saved as
   ``<result_path>/stillmix_reference.pth`` (reused on resume); ``--stillmix_reference PATH``
   uses a saved one instead;
2. every training clip (one deterministic crop per video) is scored frame by frame with the
   reference's confidence in its predicted class; the frames in the top ``--stillmix_keep``
   (0.5: the official ``prob_thre [0.5, 1.0]`` of the confidence-sorted frames) form the pool;
3. a bank of ``--stillmix_bank_size`` (1024) frames is drawn from the pool, once per run, with
   the run's seed;
4. each training clip is mixed with probability ``--stillmix_prob`` (0.5) with a random bank
   frame, with its own λ ~ Beta(200, 200) on the clip (the official class defaults; its
   Kinetics configuration uses Beta(20, 60)).

The scene target of SDN's scene head (``--dataset kinetics_adv``) is kept: the bank frame's own
scene label is not known. Under ``torchrun`` every process trains the same reference (no
collective runs while it trains) and rank 0 saves it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sdn.errors import SdnError
from sdn.methods.base import Batch, MethodSetup, draw_applied, float_clips, per_clip
from sdn.methods.frame_reference import FrameReference, clip_loader, frames_of, train_frame_reference
from sdn.methods.registry import STILLMIX_REFERENCE_FILE as REFERENCE_FILE
from sdn.seeding import mix_seed

BANK_STREAM = 0x5354  # seeds the bank draw apart from the run's other streams


@dataclass
class StillMixDraw:
    """Each clip's bank frame and weight (λ 1 = unchanged)."""

    frame: Tensor  # long [B], index into the bank
    weight: Tensor  # float [B], the clip's weight λ


class StillMix:
    def __init__(self, bank: Tensor, prob: float, alpha1: float, alpha2: float):
        """``bank``: uint8 ``[N, 3, S, S]`` frames on the training device."""
        if bank.shape[0] == 0:
            raise SdnError("StillMix: the frame bank is empty (no training frame could be scored)")
        self.bank, self.prob = bank, prob
        self.alpha1, self.alpha2 = alpha1, alpha2

    def draw(self, batch_size: int, generator: torch.Generator) -> StillMixDraw:
        frame = torch.randint(self.bank.shape[0], (batch_size,), generator=generator)
        # torch's Beta sampler takes no generator: NumPy's, seeded from ours, keeps the draw reproducible.
        beta = np.random.default_rng(int(torch.randint(2 ** 62, (1,), generator=generator)))
        weight = torch.from_numpy(beta.beta(self.alpha1, self.alpha2, size=batch_size)).to(torch.float32)
        applied = draw_applied(self.prob, batch_size, generator)
        return StillMixDraw(frame, torch.where(applied, weight, torch.ones_like(weight)))

    def apply(self, clips: Tensor, draw: StillMixDraw) -> Tensor:
        """``λ_i x_i + (1 - λ_i) f_i`` with the still frame ``f_i`` repeated over time."""
        still = self.bank[draw.frame.to(self.bank.device)].to(clips.dtype).unsqueeze(2)  # [B, 3, 1, S, S]
        weight = per_clip(draw.weight, clips)
        return weight * clips + (1 - weight) * still

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        clips = float_clips(batch)
        batch["clip"] = self.apply(clips, self.draw(clips.shape[0], generator))
        return batch


def reference_for(setup: MethodSetup) -> FrameReference:
    """``--stillmix_reference``, else ``<result_path>/stillmix_reference.pth``, else a new one (saved there)."""
    opt = setup.opt
    path = opt.stillmix_reference or os.path.join(opt.result_path, REFERENCE_FILE)
    if opt.stillmix_reference or os.path.isfile(path):
        print(f"StillMix: frame reference from {path}")
        return FrameReference.load(path, setup.n_classes).to(setup.device)
    if setup.train_dataset is None:
        raise SdnError("StillMix needs the training set to train its frame reference")
    print(f"StillMix: training the frame reference ({opt.stillmix_reference_epochs} epochs)")
    reference = train_frame_reference(
        setup.train_dataset, setup.n_classes, epochs=opt.stillmix_reference_epochs,
        learning_rate=opt.stillmix_reference_lr, batch_size=opt.batch_size, seed=opt.manual_seed,
        device=setup.device, progress=not opt.no_progress and setup.context.is_main,
        width=opt.stillmix_reference_width, normalize=setup.normalize, workers=opt.n_threads)
    if setup.context.is_main:
        reference.save(path)
        print(f"StillMix: saved the frame reference as {path}")
    return reference


@torch.no_grad()
def biased_frame_bank(reference: FrameReference, setup: MethodSetup) -> Tensor:
    """The bank: ``bank_size`` frames drawn from the ``keep`` share the reference is most confident on."""
    opt, dataset = setup.opt, setup.train_dataset
    if dataset is None:
        raise SdnError("StillMix needs the training set to build its frame bank")
    scores, where = [], []  # per frame: confidence, (item index, frame position)
    for batch in clip_loader(dataset, opt.batch_size, shuffle=False, seed=opt.manual_seed, epoch=0,
                             workers=opt.n_threads):
        if not batch:
            continue
        clips = setup.normalize(batch["clip"].to(setup.device))
        confidence = reference.frame_logits(frames_of(clips)).softmax(dim=1).amax(dim=1).cpu()
        scores.append(confidence)
        where += [(index, t) for index in batch["index"].tolist() for t in range(clips.shape[2])]
    if not scores:
        raise SdnError("StillMix: no training clip could be read to build the frame bank")
    ranked = torch.cat(scores).argsort(descending=True)
    pool = ranked[:max(1, int(round(opt.stillmix_keep * len(ranked))))]
    chosen = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(
        mix_seed(opt.manual_seed, BANK_STREAM)))[:opt.stillmix_bank_size]]
    frames = []
    for flat in sorted(chosen.tolist()):  # clip_loader ran with the dataset at epoch 0; read those clips again
        index, position = where[flat]
        frames.append(dataset[(0, index)]["clip"][:, position])
    print(f"StillMix: a bank of {len(frames)} frames from the {len(pool)} most biased of {len(ranked)}")
    return torch.stack(frames).to(setup.device)


def build(setup: MethodSetup) -> StillMix:
    reference = reference_for(setup)
    bank = biased_frame_bank(reference, setup)
    opt = setup.opt
    return StillMix(bank, opt.stillmix_prob, opt.stillmix_alpha1, opt.stillmix_alpha2)

