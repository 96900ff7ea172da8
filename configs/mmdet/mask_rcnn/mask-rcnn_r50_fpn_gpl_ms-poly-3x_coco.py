# Mask R-CNN R50-FPN on COCO, 36 epochs, multi-scale training (shorter side 640-800), polygon masks (8 GPUs x 2 images),
# plus Generic Perceptual Loss (a frozen random CNN; Liu et al., CVPR 2021) on the mask head.
# Everything but the mask loss is mmdet's baseline: the mask head's binary cross-entropy keeps the
# baseline's arguments (use_mask=True, loss_weight=1.0) and the added term is summed into `loss_mask`;
# each part is also logged on its own, as `loss_mask_ce` and `loss_mask_gpl`. Its baseline is
# mmdet::mask_rcnn/mask-rcnn_r50_fpn_ms-poly-3x_coco.py.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_ms-poly-3x_coco.py'

# Loss weight 0.17: on 28x28 ROI masks whose binary cross-entropy is about 0.1 (the mask loss of a
# trained Mask R-CNN is about 0.2), this makes the term's gradient on the mask logits about a third of
# the cross-entropy's, and about a tenth of it for an untrained head (measured with
# `python tools/calibrate_loss_weight.py random_cnn --task instance_masks`: gradient-norm ratio 1.96 at
# weight 1; our choice, the paper gives no weight for Mask R-CNN). The ROI masks go through the random
# network at 28x28, not upsampled (why: randperc_plugins/mmdet.py), its layers balanced (the core's
# default `balance='init'`); release 0.2's term is `perceptual=dict(loss_weight=1.2, balance='none')`.
model = dict(
    roi_head=dict(
        mask_head=dict(
            loss_mask=dict(
                type='randperc_plugins.mmdet.AddRandomCNNPerceptualLoss',
                perceptual=dict(loss_weight=0.17)))))
