"""Data loading: video sources, transforms, annotation readers and datasets.

Clips travel as uint8 until a batch reaches the device, where ``ClipNormalize`` turns them into
the float input the original pipeline produced frame by frame.
"""
