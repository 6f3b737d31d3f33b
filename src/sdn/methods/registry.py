"""The registry of debiasing methods: names, papers, flags, option checks (no torch here).

``sdn eval`` accepts every training flag, so ``sdn.config`` builds the whole training parser
where torch may not be installed; the flags and checks therefore live here, torch-free, and each
method's implementation (its own module, imported only when a run uses it) provides
``build(setup) -> BatchTransform``. Adding a method: one implementation module under
``sdn/methods/`` and one ``Method(...)`` entry in ``METHODS`` below, with its flags.

Defaults are the papers' (or their official code's); each implementation module's docstring
says where each comes from, and docs/methods.md gathers them.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from sdn.errors import SdnError

if TYPE_CHECKING:
    from sdn.config import Options


def _no_check(opt: Options) -> None:
    del opt


@dataclass(frozen=True)
class Method:
    """One debiasing method: how it is named, cited, configured, checked, and where it is implemented.

    ``module`` names the implementation, whose ``build(setup)`` returns the training-batch
    transform. ``needs_actor_mask`` makes the training clips carry an aligned ``actor_mask``.
    """

    name: str
    citation: str
    add_options: Callable[[Any], None]
    module: str
    check: Callable[[Options], None] = _no_check
    needs_actor_mask: bool = False

    def builder(self) -> Callable:
        """The implementation's ``build`` (imports it, and torch, now)."""
        return importlib.import_module(self.module).build


# ----------------------------------------------------------------------------------------------
# Option checks shared by the methods


def check_probability(opt: Options, name: str) -> None:
    value = getattr(opt, name)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise SdnError(f"--{name} must be in [0, 1], got {value}")


def check_non_negative(opt: Options, name: str) -> None:
    value = getattr(opt, name)
    if not value >= 0.0:
        raise SdnError(f"--{name} must be >= 0, got {value}")


def check_positive(opt: Options, name: str) -> None:
    value = getattr(opt, name)
    if not value > 0:
        raise SdnError(f"--{name} must be > 0, got {value}")


# ----------------------------------------------------------------------------------------------
# BE


def _be_options(group) -> None:
    group.add_argument("--be_max_weight", default=0.3, type=float,
                       help="BE: the added frame's weight λ is drawn uniformly in [0, this] (BE, CVPR 2021: 0.3)")
    group.add_argument("--be_prob", default=0.5, type=float,
                       help="BE: probability that a training clip is changed (0.5)")


def _be_check(opt: Options) -> None:
    check_probability(opt, "be_prob")
    check_probability(opt, "be_max_weight")


# ----------------------------------------------------------------------------------------------
# ActorCutMix


def _actorcutmix_options(group) -> None:
    group.add_argument("--actorcutmix_prob", default=0.5, type=float,
                       help="ActorCutMix: probability that a training batch is mixed (the paper's code: 0.5)")
    group.add_argument("--actorcutmix_det_threshold", default=0.4, type=float,
                       help="ActorCutMix with boxes: a detection scoring at least this is part of the actor (0.4)")


def _actorcutmix_check(opt: Options) -> None:
    check_probability(opt, "actorcutmix_prob")
    check_probability(opt, "actorcutmix_det_threshold")
    if opt.human_masks_path:
        if not os.path.isdir(opt.human_masks_path):
            raise SdnError(f"--human_masks_path {opt.human_masks_path}: not a directory")
        return
    if not os.path.isdir(opt.human_dets_path):
        raise SdnError("--debias actorcutmix needs the actor's pixels: give --human_masks_path DIR (per-frame masks) "
                       f"or --human_dets_path DIR (boxes); {opt.human_dets_path!r} is not a directory")


# ----------------------------------------------------------------------------------------------
# FAME


def _fame_options(group) -> None:
    group.add_argument("--fame_fg_ratio", default=0.5, type=float,
                       help="FAME: share of each frame kept as foreground (FAME, CVPR 2022: β = 0.5)")
    group.add_argument("--fame_prob", default=0.5, type=float,
                       help="FAME: probability that a training clip is merged onto another's background (0.5)")


def _fame_check(opt: Options) -> None:
    check_probability(opt, "fame_prob")
    check_probability(opt, "fame_fg_ratio")
    if opt.sample_duration < 2:
        raise SdnError("--debias fame finds the foreground from motion: it needs --sample_duration >= 2")


# ----------------------------------------------------------------------------------------------
# StillMix

STILLMIX_REFERENCE_FILE = "stillmix_reference.pth"


def _stillmix_options(group) -> None:
    add = group.add_argument
    add("--stillmix_prob", default=0.5, type=float,
        help="StillMix: probability that a training clip is mixed with a biased frame (StillMix, ICCV 2023: 0.5)")
    add("--stillmix_alpha1", default=200.0, type=float,
        help="StillMix: the clip's weight λ ~ Beta(alpha1, alpha2); the frame gets 1 - λ (200)")
    add("--stillmix_alpha2", default=200.0, type=float, help="StillMix: see --stillmix_alpha1 (200)")
    add("--stillmix_bank_size", default=1024, type=int, help="StillMix: number of biased frames in the bank (1024)")
    add("--stillmix_keep", default=0.5, type=float,
        help="StillMix: the bank is drawn from this share of frames the reference is most confident on (0.5)")
    add("--stillmix_reference", default="", type=str,
        help="StillMix: a trained frame reference (.pth); by default one is trained first and saved as "
             f"<result_path>/{STILLMIX_REFERENCE_FILE}")
    add("--stillmix_reference_epochs", default=10, type=int,
        help="StillMix: epochs of the frame reference (each sees every frame of one clip per video; 10)")
    add("--stillmix_reference_lr", default=0.04, type=float, help="StillMix: learning rate of the frame reference (0.04)")
    add("--stillmix_reference_width", default=32, type=int,
        help="StillMix: channels of the frame reference's first stage (32)")


def _stillmix_check(opt: Options) -> None:
    check_probability(opt, "stillmix_prob")
    check_probability(opt, "stillmix_keep")
    for name in ("stillmix_alpha1", "stillmix_alpha2", "stillmix_bank_size", "stillmix_reference_epochs",
                 "stillmix_reference_lr", "stillmix_reference_width", "stillmix_keep"):
        check_positive(opt, name)
    if opt.stillmix_reference and not os.path.isfile(opt.stillmix_reference):
        raise SdnError(f"--stillmix_reference {opt.stillmix_reference}: no such file")


# ----------------------------------------------------------------------------------------------
# ALBAR

ALBAR_STATIC_FRAMES = ("middle", "random")


def _albar_options(group) -> None:
    add = group.add_argument
    add("--albar_adv_weight", default=1.0, type=float,
        help="ALBAR: weight of the negative cross entropy on the static clip (ALBAR, ICLR 2025: 1.0)")
    add("--albar_entropy_weight", default=4.25, type=float,
        help="ALBAR: weight of the entropy maximisation on the static clip (4.25)")
    add("--albar_gp_weight", default=10.0, type=float,
        help="ALBAR: weight of the gradient penalty on the static clip (10.0)")
    add("--albar_static_frame", default="middle", choices=ALBAR_STATIC_FRAMES,
        help="ALBAR: the frame the static clip repeats: the middle one (the paper's) or a random one per clip")


def _albar_check(opt: Options) -> None:
    for name in ("albar_adv_weight", "albar_entropy_weight", "albar_gp_weight"):
        check_non_negative(opt, name)
    if opt.compile and opt.albar_gp_weight > 0:
        raise SdnError("--debias albar: its gradient penalty differentiates twice, which --compile does not support; "
                       "drop --compile (or set --albar_gp_weight 0)")


# ----------------------------------------------------------------------------------------------

METHODS: dict[str, Method] = {method.name: method for method in (
    Method("be", "BE, Background Erasing (Wang et al., CVPR 2021): add a random frame of the clip to every frame",
           _be_options, "sdn.methods.be", _be_check),
    Method("actorcutmix", "ActorCutMix (Zou et al., arXiv 2021 / CVIU 2023): paste the actor onto another clip's "
           "background (needs --human_masks_path or --human_dets_path)",
           _actorcutmix_options, "sdn.methods.actorcutmix", _actorcutmix_check, needs_actor_mask=True),
    Method("fame", "FAME (Ding et al., CVPR 2022): the moving foreground, found from motion and colour, pasted onto "
           "another clip of the batch", _fame_options, "sdn.methods.fame", _fame_check),
    Method("stillmix", "StillMix (Li et al., ICCV 2023): mix frames a 2D reference network finds biased into other "
           "clips (the reference is trained first, or --stillmix_reference)",
           _stillmix_options, "sdn.methods.stillmix", _stillmix_check),
    Method("albar", "ALBAR (Fioresi et al., ICLR 2025): a static clip of one frame, with an adversarial negative "
           "cross entropy, entropy maximisation and a gradient penalty on it",
           _albar_options, "sdn.methods.albar", _albar_check),
)}

NONE = "none"
CHOICES = (NONE, *METHODS)


def method_of(opt: Options) -> Method | None:
    """The run's method, None without ``--debias``."""
    name = getattr(opt, "debias", NONE)
    return None if name == NONE else METHODS[name]


def needs_actor_mask(opt: Options) -> bool:
    """Whether training clips must carry an aligned ``actor_mask``."""
    method = method_of(opt)
    return method is not None and method.needs_actor_mask
