"""tools/train_net.py's training, plus a record per rank: the global RNG draw right after detectron2's
per-rank seeding, and the mask head's random loss network after training (tests/detectron2)."""
import torch
import train_net  # tools/ on PYTHONPATH
from detectron2.engine import launch
from detectron2.utils import comm


def worker(args):
    train_net.register_datasets(args.coco_dataset)
    cfg = train_net.setup(args)
    draw = torch.rand(4)  # differs per rank: default_setup seeds each rank differently
    run = train_net.Run(cfg)
    trainer = run.train(run.model(), resume=False)
    head = trainer.model.module.roi_heads.mask_head
    torch.save({"draw": draw, "weights": head.perceptual_loss.random_weights(),
                "predictor": head.predictor.weight.detach().clone(),
                "world_size": comm.get_world_size()},
               f"{cfg.OUTPUT_DIR}/rank{comm.get_rank()}.pt")


if __name__ == "__main__":
    args = train_net.parse_args()
    launch(worker, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
