# DeepLabV3+-R50-D8 on Cityscapes, 4 GPUs x 2 images, 80k iterations, 512x1024 crops,
# plus patch-MMD (Amir & Weiss, CVPR 2021).
# Everything but the decode loss is mmseg's baseline; the cross-entropy term keeps the baseline's
# arguments and the added term is logged as `decode.loss_patch_mmd`. Its baseline is
# mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py.
_base_ = 'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py'

# Loss weight 0.4: with 19 classes, this makes the patch-MMD term's gradient on the logits about a
# third of cross-entropy's for a nearly converged prediction (measured with `python
# tools/calibrate_loss_weight.py patch_mmd --num-classes 19 --size 512 1024`; our choice, the paper gives
# no weight). Resolution: probabilities and one-hot labels are area-resized to at most 128 pixels on the
# longer side (`max_size`, the mmseg adapter's default) and compared as distributions of 3x3 patches
# with random features: about 8k patches per crop, a few percent of the train step (README, Benchmarks).
model = dict(
    decode_head=dict(
        loss_decode=dict(
            type='randperc_plugins.mmseg.AddPatchMMDLoss',
            perceptual=dict(loss_weight=0.4))))
