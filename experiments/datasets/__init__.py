"""Small datasets written in the frameworks' own folder formats, for tests, the demo and benchmarks.

* :mod:`.seg_scenes`: procedurally drawn segmentation scenes in mmseg's folder format.
* :mod:`.coco_shapes`: procedurally drawn shapes as a COCO-format instance-segmentation dataset
  (polygons and RLE, thin and thick shapes, overlaps), for mmdet and detectron2.
* :mod:`.sr_photos`: photographs as a super-resolution dataset in mmagic's DIV2K layout.
"""
