# PSPNet-R50-D8 on Cityscapes, 4 GPUs x 2 images, 80k iterations, 512x1024 crops,
# plus Generic Perceptual Loss (a frozen random CNN; Liu et al., CVPR 2021).
# Everything but the decode loss is mmseg's baseline; the cross-entropy term keeps the baseline's
# arguments and the added term is logged as `decode.loss_gpl`. Its baseline is
# mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py.
_base_ = 'mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py'

# Loss weight 0.8: with 19 classes, this makes the perceptual term's gradient on the logits about a
# third of cross-entropy's for a nearly converged prediction, and a small fraction of it early in training
# (measured with `python tools/calibrate_loss_weight.py random_cnn --num-classes 19 --size 512 1024`; our choice,
# the paper gives no weight). Resolution: the decode head compares softmax probabilities with the one-hot
# label at the label's resolution; the random network sees them area-resized to at most 256 pixels on
# the longer side (`max_size`, the core default), which keeps the term's cost to a few percent of the
# train step (README, Benchmarks) while it still sees every object larger than a few pixels.
# Each compared layer's term is divided by its gain at initialisation (the core's default
# `balance='init'`); release 0.2's term is `perceptual=dict(loss_weight=5.0, balance='none')`.
model = dict(
    decode_head=dict(
        loss_decode=dict(
            type='randperc_plugins.mmseg.AddRandomCNNPerceptualLoss',
            perceptual=dict(loss_weight=0.8))))
