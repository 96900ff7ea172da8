"""Mask R-CNN R50-FPN 3x on COCO, detectron2's model-zoo LazyConfig (its 1x with the 3x schedule, as
its YAML `mask_rcnn_R_50_FPN_3x.yaml`), plus the Generic Perceptual Loss (loss_mask_gpl) on the masks."""
from detectron2 import model_zoo

_base = model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py")
dataloader, model, optimizer, train = _base.dataloader, _base.model, _base.optimizer, _base.train
lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_3x
train.max_iter = 270000  # 3 x 90k iterations of 16 images

model.roi_heads.mask_head._target_ = "randperc_plugins.detectron2.MaskRCNNConvUpsampleHeadWithGPL"
train.output_dir = "./output/mask_rcnn_R_50_FPN_3x_gpl"
