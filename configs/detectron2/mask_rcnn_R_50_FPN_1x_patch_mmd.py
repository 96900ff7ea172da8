"""Mask R-CNN R50-FPN 1x on COCO, detectron2's model-zoo LazyConfig, plus Patch-MMD (loss_mask_patch_mmd) on the masks."""
from detectron2 import model_zoo

_base = model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py")
dataloader, model, optimizer, lr_multiplier, train = (
    _base.dataloader, _base.model, _base.optimizer, _base.lr_multiplier, _base.train)

model.roi_heads.mask_head._target_ = "randperc_plugins.detectron2.MaskRCNNConvUpsampleHeadWithPatchMMD"
train.output_dir = "./output/mask_rcnn_R_50_FPN_1x_patch_mmd"
