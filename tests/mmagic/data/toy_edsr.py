# A tiny EDSR x2 (8 channels, 2 blocks) on the photographs dataset (tools/make_sr_dataset.py): 4
# iterations of batch 2 (per process) on 32x32 ground-truth crops, then validation with mmagic's PSNR
# and SSIM on the held-out image. data_root is set by the test (--cfg-options).
_base_ = 'mmagic::edsr/edsr_x2c64b16_1xb16-300k_div2k.py'

model = dict(generator=dict(mid_channels=8, num_blocks=2))
train_dataloader = dict(
    batch_size=2, num_workers=0,
    dataset=dict(pipeline=[
        dict(type='LoadImageFromFile', key='img', color_type='color', channel_order='rgb',
             imdecode_backend='cv2'),
        dict(type='LoadImageFromFile', key='gt', color_type='color', channel_order='rgb',
             imdecode_backend='cv2'),
        dict(type='SetValues', dictionary=dict(scale=2)),
        dict(type='PairedRandomCrop', gt_patch_size=32),
        dict(type='PackInputs'),
    ]))
val_dataloader = dict(num_workers=0)
val_evaluator = dict(metrics=[dict(type='PSNR', crop_border=2), dict(type='SSIM', crop_border=2)])
train_cfg = dict(max_iters=4, val_interval=4)
default_hooks = dict(checkpoint=dict(interval=4, out_dir=None), logger=dict(interval=1))
log_processor = dict(window_size=1)
randomness = dict(seed=0)
