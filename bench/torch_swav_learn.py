"""PyTorch reference for the learning benchmark: SwAV (facebookresearch/swav's loss, Sinkhorn and apex LARC)
on torchvision's RegNet with the same tiny shape, head, crops and torchvision augmentation, trained on the
pattern images that bench/pattern-folders.ts writes; prints the loss and k-NN top-1 (k 20, T 0.07) every
--every steps and trained vs initialisation at the end. Debian: apt-get install python3-torch python3-torchvision.

  npx tsx bench/pattern-folders.ts /tmp/pat && /usr/bin/python3 bench/torch_swav_learn.py --dir /tmp/pat --eps 0.02 --final-lr 1 --steps 600
"""
import argparse, glob, math, random, time
import torch, torch.nn as nn, torch.nn.functional as F
from torchvision import transforms as T
from torchvision.models.regnet import BlockParams, RegNet
from PIL import Image

p = argparse.ArgumentParser()
p.add_argument('--dir', default='/tmp/pat'); p.add_argument('--steps', type=int, default=300)
p.add_argument('--batch', type=int, default=32); p.add_argument('--lr', type=float, default=1.0)
p.add_argument('--final-lr', type=float, default=0.0); p.add_argument('--warmup', type=int, default=10)
p.add_argument('--wd', type=float, default=1e-6); p.add_argument('--K', type=int, default=32)
p.add_argument('--dim', type=int, default=32); p.add_argument('--hidden', type=int, default=64)
p.add_argument('--freeze', type=int, default=20); p.add_argument('--eps', type=float, default=0.05)
p.add_argument('--temp', type=float, default=0.1); p.add_argument('--jitter', type=float, default=0.5)
p.add_argument('--grey', type=float, default=0.2); p.add_argument('--large', default='2x32@0.3-1')
p.add_argument('--small', default='2x16@0.1-0.3'); p.add_argument('--model', default='4,16,8,2,16')
p.add_argument('--opt', default='lars'); p.add_argument('--trust', type=float, default=0.001)
p.add_argument('--queue', type=int, default=0); p.add_argument('--queue-start', type=int, default=0)
p.add_argument('--threads', type=int, default=1); p.add_argument('--seed', type=int, default=0)
p.add_argument('--every', type=int, default=50); p.add_argument('--ramp', type=int, default=0); p.add_argument('--nobn', action='store_true'); p.add_argument('--zero-gamma', action='store_true'); p.add_argument('--tf-same', action='store_true'); p.add_argument('--eval-size', type=int, default=0)
a = p.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(a.seed); random.seed(a.seed)

def load(split):
    xs, ys = [], []
    for f in sorted(glob.glob(f'{a.dir}/{split}/c*/*.jpg')):
        xs.append(Image.open(f).convert('RGB')); ys.append(int(f.split('/')[-2][1:]))
    return xs, torch.tensor(ys)
data, _ = load('data'); trX, trY = load('train'); teX, teY = load('test')
norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
def aug(size, lo, hi, t=1.0):
    s = a.jitter * t; lo, hi = 0.99 + (lo - 0.99) * t, 1.0 + (hi - 1.0) * t
    return T.Compose([T.RandomResizedCrop(size, scale=(lo, hi)), T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8), T.RandomGrayscale(p=a.grey * t), T.ToTensor(), norm])
specs = []
for spec in [a.large] + ([a.small] if a.small != 'none' else []):
    n, rest = spec.split('x'); size, rng = rest.split('@'); lo, hi = map(float, rng.split('-'))
    specs.append((int(n), int(size), lo, hi))
def make_groups(t): return [(n, aug(size, lo, hi, t)) for n, size, lo, hi in specs]
groups = make_groups(1.0)
d, w0, wa, wm, g = map(float, a.model.split(','))
backbone = RegNet(BlockParams.from_init_params(depth=int(d), w_0=int(w0), w_a=wa, w_m=wm, group_width=int(g), se_ratio=0.25))
from torchvision.models.regnet import BottleneckTransform
if a.zero_gamma:
    for m in backbone.modules():
        if isinstance(m, BottleneckTransform): nn.init.zeros_(m.c[1].weight)
if a.tf_same:  # TensorFlow's 'same' padding: stride-2 3x3 convs pad (0 before, 1 after) on even inputs
    for m in backbone.modules():
        if isinstance(m, nn.Conv2d) and m.stride[0] == 2 and m.kernel_size[0] == 3:
            m.padding = (0, 0)
            m.register_forward_pre_hook(lambda mod, inp: (F.pad(inp[0], (0, 1 if inp[0].shape[-1] % 2 == 0 else 0, 0, 1 if inp[0].shape[-2] % 2 == 0 else 0)),))
width = backbone.fc.in_features; backbone.fc = nn.Identity()
head = nn.Sequential(nn.Linear(width, a.hidden), nn.Identity() if a.nobn else nn.BatchNorm1d(a.hidden), nn.ReLU(), nn.Linear(a.hidden, a.dim))
protos = nn.Linear(a.dim, a.K, bias=False)
mods = nn.ModuleList([backbone, head, protos])

@torch.no_grad()
def feats(xs):
    backbone.eval(); out = []
    for i in range(0, len(xs), 100):
        ev = (lambda x: T.functional.center_crop(T.functional.resize(x, round(a.eval_size / 0.875)), a.eval_size)) if a.eval_size else (lambda x: x)
        out.append(F.normalize(backbone(torch.stack([norm(T.functional.to_tensor(ev(x))) for x in xs[i:i + 100]])), dim=1))
    backbone.train(); return torch.cat(out)
@torch.no_grad()
def knn():
    A, B = feats(trX), feats(teX); s = B @ A.t(); v, i = s.topk(20, dim=1)
    votes = torch.zeros(len(B), 4).scatter_add_(1, trY[i], (v / 0.07).exp())
    return (votes.argmax(1) == teY).float().mean().item()
knn0 = knn()

class LARC(torch.optim.Optimizer):  # apex LARC as facebookresearch/swav uses it (clip=False)
    def __init__(self, params, lr, trust): super().__init__(params, dict(lr=lr, momentum=0.9, wd=a.wd)); self.trust = trust
    @torch.no_grad()
    def step(self):
        for gr in self.param_groups:
            for q in gr['params']:
                if q.grad is None: continue
                gd = q.grad + gr['wd'] * q
                pn, gn = q.norm(), gd.norm()
                scale = self.trust * pn / (gn + gr['wd'] * pn) if a.opt == 'lars' and pn > 0 and gn > 0 else 1.0
                gd = gd * scale
                st = self.state[q]
                buf = st.get('m'); buf = gd.clone() if buf is None else buf.mul_(0.9).add_(gd); st['m'] = buf
                q.add_(buf, alpha=-gr['lr'])
opt = LARC(mods.parameters(), a.lr, a.trust)

@torch.no_grad()
def sinkhorn(out):
    Q = torch.exp(out / a.eps).t(); Q /= Q.sum(); K, B = Q.shape
    for _ in range(3):
        Q /= Q.sum(1, keepdim=True); Q /= K; Q /= Q.sum(0, keepdim=True); Q /= B
    return (Q * B).t()
queue = torch.zeros(2, a.queue, a.dim) if a.queue else None
nb = sum(n for n, _ in groups); t0 = time.time()
for step in range(a.steps):
    lr = a.lr * (step + 1) / a.warmup if step < a.warmup else a.final_lr + 0.5 * (a.lr - a.final_lr) * (1 + math.cos(math.pi * (step - a.warmup) / (a.steps - a.warmup)))
    for gr in opt.param_groups: gr['lr'] = lr
    with torch.no_grad(): protos.weight.copy_(F.normalize(protos.weight, dim=1))
    if a.ramp: groups = make_groups(min(1.0, step / a.ramp))
    idx = [random.randrange(len(data)) for _ in range(a.batch)]
    zs = []
    for n, tf_ in groups:
        for _ in range(n):
            x = torch.stack([tf_(data[i]) for i in idx])
            zs.append(x)
    # forward grouped by resolution like SwAV
    emb = []
    i = 0
    for n, _ in groups:
        out = backbone(torch.cat(zs[i:i + n])); i += n
        emb.append(out)
    z = F.normalize(head(torch.cat(emb)), dim=1); scores = protos(z)
    bs = a.batch; loss = 0
    for ci in range(2):
        with torch.no_grad():
            out = scores[bs * ci: bs * (ci + 1)].detach()
            if queue is not None and step >= a.queue_start:
                if queue[ci].abs().sum() > 0: out = torch.cat([queue[ci] @ protos.weight.t(), out])
            if queue is not None:
                queue[ci, bs:] = queue[ci, :-bs].clone(); queue[ci, :bs] = z[ci * bs:(ci + 1) * bs].detach()
            q = sinkhorn(out)[-bs:]
        sub = 0
        for v in [v for v in range(nb) if v != ci]:
            sub -= (q * F.log_softmax(scores[bs * v: bs * (v + 1)] / a.temp, dim=1)).sum(1).mean()
        loss += sub / (nb - 1)
    loss /= 2
    opt.zero_grad(); loss.backward()
    if step < a.freeze: protos.weight.grad = None
    opt.step()
    if (step + 1) % a.every == 0: print(f'step {step + 1} loss {loss.item():.4f} lr {lr:.3f} t {time.time() - t0:.0f}s knn {knn():.3f}', flush=True)
print(f'final loss {loss.item():.4f} vs ln K {math.log(a.K):.4f}; knn trained {knn():.3f} init {knn0:.3f}')
