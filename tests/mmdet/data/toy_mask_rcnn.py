# A tiny mmdet baseline for tests: Mask R-CNN with FPN on a ResNet-18-shaped backbone 8 channels wide
# (no pretrained weights), trained for a few iterations on the toy COCO dataset of
# experiments/datasets/coco_shapes.py (128x128, 4 classes), evaluated with mmdet's CocoMetric
# (bbox and segm AP). Set `data_root` and the evaluator's `ann_file` with --cfg-options.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/default_runtime.py',
]
num_classes = 4
model = dict(
    backbone=dict(depth=18, base_channels=8, stem_channels=8, frozen_stages=-1,
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=16),
        bbox_head=dict(in_channels=16, fc_out_channels=32, num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=16),
        mask_head=dict(num_convs=2, in_channels=16, conv_out_channels=16, num_classes=num_classes)),
    train_cfg=dict(rpn=dict(sampler=dict(num=64)), rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100), rcnn=dict(max_per_img=20)))

data_root = 'data/coco_shapes/'
metainfo = dict(classes=('rectangle', 'disc', 'triangle', 'bar'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True), batch_sampler=None,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json', metric=['bbox', 'segm'])
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))
param_scheduler = []
train_cfg = dict(type='IterBasedTrainLoop', max_iters=4, val_interval=4)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=4))
env_cfg = dict(dist_cfg=dict(backend='gloo'), mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
