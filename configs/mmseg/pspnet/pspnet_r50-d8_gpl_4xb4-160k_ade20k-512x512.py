# PSPNet-R50-D8 on ADE20K, 4 GPUs x 4 images, 160k iterations, 512x512 crops,
# plus Generic Perceptual Loss (a frozen random CNN; Liu et al., CVPR 2021).
# Everything but the decode loss is mmseg's baseline; the cross-entropy term keeps the baseline's
# arguments and the added term is logged as `decode.loss_gpl`. Its baseline is
# mmseg::pspnet/pspnet_r50-d8_4xb4-160k_ade20k-512x512.py.
_base_ = 'mmseg::pspnet/pspnet_r50-d8_4xb4-160k_ade20k-512x512.py'

# Loss weight 5.0: with 150 classes, this makes the perceptual term's gradient on the logits about a
# third of cross-entropy's for a nearly converged prediction, and a small fraction of it early in training
# (measured with `python tools/calibrate_loss_weight.py random_cnn --num-classes 150 --size 512 512`; our choice,
# the paper gives no weight). Resolution: the decode head compares softmax probabilities with the one-hot
# label at the label's resolution; the random network sees them area-resized to at most 256 pixels on
# the longer side (`max_size`, the core default), which keeps the term's cost to a few percent of the
# train step (README, Benchmarks) while it still sees every object larger than a few pixels.
# Each compared layer's term is divided by its gain at initialisation (the core's default
# `balance='init'`); release 0.2's term is `perceptual=dict(loss_weight=50.0, balance='none')`.
model = dict(
    decode_head=dict(
        loss_decode=dict(
            type='randperc_plugins.mmseg.AddRandomCNNPerceptualLoss',
            perceptual=dict(loss_weight=5.0))))
