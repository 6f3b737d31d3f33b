"""What a trained model looks at, and how its training went.

SDN's claim is qualitative as much as numeric: a scene-debiased model attends to the actor, a
baseline to the background. This package makes that visible and measurable:

* :mod:`sdn.viz.cam` — class activation maps (CAM for the pooled-linear action head, Grad-CAM for
  any named layer), normalised to [0, 1] at the clip's size;
* :mod:`sdn.viz.render` — maps blended over the frames, as a PNG strip and an animated GIF;
* :mod:`sdn.viz.attention` — actor attention: the share of the map's mass inside the human boxes,
  per clip and averaged over a dataset;
* :mod:`sdn.viz.checkpoints` — a ready model from any ``sdn train`` checkpoint;
* :mod:`sdn.viz.plots` — training and validation curves from ``train.log`` / ``val.log``.
"""
