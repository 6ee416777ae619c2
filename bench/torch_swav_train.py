"""PyTorch reference for bench/train.ts: torchvision's RegNet with the SwAV head (2048-128, 3000 prototypes)
trained on random multi-crop batches (same crops and batch as the tfjs run), SGD steps, channels_last, on
the CPU threads given, or on a CUDA GPU (`--device cuda --dtype bf16`: autocast to bfloat16, Sinkhorn in f32,
cuDNN autotuned during the warm-up steps, the timed steps between two torch.cuda.synchronize()). Prints one JSON
line: images, CPU and wall seconds (and on CUDA the device and its peak memory).

    python3 bench/torch_swav_train.py MODEL BATCH STEPS THREADS CROPS [--device cpu|cuda] [--dtype f32|bf16] [--warmup N]
"""
import argparse, json, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

ap = argparse.ArgumentParser()
ap.add_argument("model"); ap.add_argument("batch", type=int); ap.add_argument("steps", type=int)
ap.add_argument("threads", type=int); ap.add_argument("crops")
ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
ap.add_argument("--warmup", type=int, help="untimed steps first (default 1 on the CPU, 5 on CUDA)")
args = ap.parse_args()
model_name, batch, steps, threads = args.model, args.batch, args.steps, args.threads
crops = [(int(c), int(s)) for c, s in (g.split("x") for g in args.crops.split(","))]
if args.device == "cuda" and not torch.cuda.is_available():
    sys.exit("no CUDA: torch %s sees no GPU" % torch.__version__)
device = torch.device(args.device)
cuda = device.type == "cuda"
torch.backends.cudnn.benchmark = cuda
torch.set_num_threads(threads)
torch.manual_seed(0)

# torchvision has no 200MF models: build those from the paper's parameters (as src/train/regnet-spec.ts does).
SMALL = {"regnety_200mf": (0.25,), "regnetx_200mf": (None,)}
if model_name in SMALL:
    from torchvision.models.regnet import BlockParams, RegNet
    backbone = RegNet(BlockParams.from_init_params(depth=13, w_0=24, w_a=36.44, w_m=2.49, group_width=8, se_ratio=SMALL[model_name][0]))
else:
    backbone = getattr(torchvision.models, model_name.replace("regnety", "regnet_y").replace("regnetx", "regnet_x"))()
width = backbone.fc.in_features
backbone.fc = nn.Identity()
head = nn.Sequential(nn.Linear(width, 2048), nn.BatchNorm1d(2048), nn.ReLU(inplace=True), nn.Linear(2048, 128))
prototypes = nn.Linear(128, 3000, bias=False)
modules = nn.ModuleList([backbone, head, prototypes]).to(device=device, memory_format=torch.channels_last)
opt = torch.optim.SGD(modules.parameters(), lr=0.01, momentum=0.9)


@torch.no_grad()
def sinkhorn(out, eps=0.05, iters=3):
    q = torch.exp(out.float() / eps).t()
    q /= q.sum()
    k, b = q.shape
    for _ in range(iters):
        q /= q.sum(dim=1, keepdim=True); q /= k
        q /= q.sum(dim=0, keepdim=True); q /= b
    return (q * b).t()


def forward():
    feats = []
    for count, size in crops:
        x = torch.randn(count * batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
        feats.append(backbone(x))
    z = F.normalize(head(torch.cat(feats)), dim=1)
    scores = prototypes(z)
    n = sum(c for c, _ in crops)
    loss = 0
    for i in (0, 1):
        q = sinkhorn(scores[batch * i: batch * (i + 1)].detach())
        for v in range(n):
            if v != i:
                loss = loss - torch.mean(torch.sum(q * F.log_softmax(scores[batch * v: batch * (v + 1)] / 0.1, dim=1), dim=1))
    return loss


def step():
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
        loss = forward()
    opt.zero_grad()
    loss.backward()
    opt.step()


for _ in range(args.warmup if args.warmup is not None else 5 if cuda else 1):
    step()
if cuda:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
t0, c0 = time.perf_counter(), time.process_time()
for _ in range(steps):
    step()
if cuda:
    torch.cuda.synchronize()
result = {"images": steps * batch, "cpu": time.process_time() - c0, "wall": time.perf_counter() - t0}
if cuda:
    result.update(device=torch.cuda.get_device_name(), dtype=args.dtype, peak_gib=torch.cuda.max_memory_allocated() / 2**30)
print(json.dumps(result))
