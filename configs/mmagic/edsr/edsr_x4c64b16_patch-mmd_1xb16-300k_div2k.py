# EDSR x4 (64 channels, 16 blocks) on DIV2K, 1 GPU x 16 crops, 300k iterations, 196x196 ground-truth crops,
# plus Patch-MMD (the MMD of 7x7 patch distributions; Amir & Weiss, CVPR 2021).
# Everything but the pixel loss is mmagic's baseline; its L1 term keeps the baseline's arguments
# (logged as `loss_pix`) and the added term is logged as `loss_patch_mmd`. Its baseline is
# mmagic::edsr/edsr_x4c64b16_1xb16-300k_div2k.py.
_base_ = 'mmagic::edsr/edsr_x4c64b16_1xb16-300k_div2k.py'

# Loss weight 0.1: the term's gradient on the prediction is then 0.33 of L1's for a bicubic
# x4 prediction moved 80% of the way to the ground truth, and 0.23 for the plain bicubic one,
# on 196x196 crops of four photographs (measured with `python tools/calibrate_loss_weight.py
# patch_mmd --task restoration --scale 4 --size 196 196`; our choice, the paper gives no weight for SR).
# Patch-MMD compares 7x7 patches, each with its per-channel mean removed (the restoration default,
# `normalize='channel_mean'`, chosen by the README's ablation), through random Fourier features
# (`method='auto'`: a crop has thousands of patches; loss within about 1% of the exact MMD, README).
model = dict(
    pixel_loss=dict(
        type='randperc_plugins.mmagic.AddPatchMMDLoss',
        perceptual=dict(loss_weight=0.1)))
