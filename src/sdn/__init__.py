"""sdn: the Scene Debiasing Network (Choi et al., NeurIPS 2019) for action recognition on current PyTorch."""

__version__ = "0.1.0"
