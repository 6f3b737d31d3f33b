"""Training, validation and test: one trainer, the objectives, the optimizers.

The library API: build a model (:mod:`sdn.models`), pick an objective (:class:`Baseline`,
:class:`SceneAdversarial`, :class:`FullSDN`), and let :class:`Trainer` run :meth:`Trainer.step`
on your batches or :meth:`Trainer.fit` over :class:`EpochLoader` epochs. README "Python API".
"""

from sdn.engine.objectives import Albar, Baseline, FullSDN, MaskLoss, Objective, SceneAdversarial, Step, build_objective
from sdn.engine.optim import OptimizerConfig, OptimizerSchedule
from sdn.engine.trainer import EpochLoader, RunLogs, Trainer, TrainerConfig
from sdn.engine.wrapping import training_wrapper

__all__ = ["Albar", "Baseline", "EpochLoader", "FullSDN", "MaskLoss", "Objective", "OptimizerConfig",
           "OptimizerSchedule", "RunLogs", "SceneAdversarial", "Step", "Trainer", "TrainerConfig", "build_objective",
           "training_wrapper"]
