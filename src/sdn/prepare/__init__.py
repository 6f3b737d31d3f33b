"""``sdn prepare``: every input of the method made from raw videos.

The original shipped none of these tools and pointed to multi-gigabyte downloads; each module
here makes one kind of input in the exact format the training code reads:

* ``frames``: videos to ``image_%05d.jpg`` folders with ``n_frames`` (and ``fps``);
* ``annotations``: the original JSON annotation files from the official split files;
* ``scene_labels``: Places365 scene pseudo labels (safe ``.npz``, optionally the original ``.npy``);
* ``detect_humans``: per-frame human boxes from a torchvision detector (same two formats);
* ``segment_humans``: per-frame person masks from a torchvision Mask R-CNN (``sdn.data.human_masks``);
* ``scuba``: SCUBA/SCUFO scene-bias test splits (``sdn.data.test_splits``) from a dataset's videos;
* ``convert``: the original pickled files to the safe format and back.

``runner`` drives the three model-based steps (batching, resuming, summaries); ``formats`` reads
and writes both file formats of both kinds; ``common`` holds what every step reports.
"""
