"""Small datasets written in the frameworks' own folder formats, for tests, the demo and benchmarks.

* :mod:`.seg_scenes`: procedurally drawn segmentation scenes in mmseg's folder format.
* :mod:`.sr_photos`: photographs as a super-resolution dataset in mmagic's DIV2K layout.
"""
