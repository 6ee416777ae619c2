"""PyTorch reference for bench/train.ts: torchvision's RegNet with the SwAV head (2048-128, 3000 prototypes)
trained on random multi-crop batches (same crops and batch as the tfjs run), SGD steps, channels_last, on
the CPU threads given. Prints one JSON line: images, CPU and wall seconds."""
import json, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

model_name, batch, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
crops = [(int(c), int(s)) for c, s in (g.split("x") for g in sys.argv[5].split(","))]
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
modules = nn.ModuleList([backbone, head, prototypes]).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(modules.parameters(), lr=0.01, momentum=0.9)


@torch.no_grad()
def sinkhorn(out, eps=0.05, iters=3):
    q = torch.exp(out / eps).t()
    q /= q.sum()
    k, b = q.shape
    for _ in range(iters):
        q /= q.sum(dim=1, keepdim=True); q /= k
        q /= q.sum(dim=0, keepdim=True); q /= b
    return (q * b).t()


def step():
    feats = []
    for count, size in crops:
        x = torch.randn(count * batch, 3, size, size).contiguous(memory_format=torch.channels_last)
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
    opt.zero_grad()
    loss.backward()
    opt.step()


step()  # warm-up
t0, c0 = time.perf_counter(), time.process_time()
for _ in range(steps):
    step()
print(json.dumps({"images": steps * batch, "cpu": time.process_time() - c0, "wall": time.perf_counter() - t0}))
