# EDSR x3 (64 channels, 16 blocks) on DIV2K, 1 GPU x 16 crops, 300k iterations, 144x144 ground-truth crops,
# plus Generic Perceptual Loss (a frozen random CNN; Liu et al., CVPR 2021).
# Everything but the pixel loss is mmagic's baseline; its L1 term keeps the baseline's arguments
# (logged as `loss_pix`) and the added term is logged as `loss_gpl`. Its baseline is
# mmagic::edsr/edsr_x3c64b16_1xb16-300k_div2k.py.
_base_ = 'mmagic::edsr/edsr_x3c64b16_1xb16-300k_div2k.py'

# Loss weight 0.1: the term's gradient on the prediction is then 0.34 of L1's for a bicubic
# x3 prediction moved 80% of the way to the ground truth, and 0.25 for the plain bicubic one,
# on 144x144 crops of four photographs (measured with `python tools/calibrate_loss_weight.py
# random_cnn --task restoration --scale 3 --size 144 144`; our choice, the paper gives no weight for SR).
# Its layers are balanced (the core's default `balance='init'`); release 0.2's term is
# `perceptual=dict(loss_weight=1.0, balance='none')`.
model = dict(
    pixel_loss=dict(
        type='randperc_plugins.mmagic.AddRandomCNNPerceptualLoss',
        perceptual=dict(loss_weight=0.1)))
