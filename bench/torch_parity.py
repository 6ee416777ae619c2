"""PyTorch side of bench/torch-parity.ts: loads its weights into torchvision's RegNet + SwAV head, recomputes
the loss and gradients in float64 and prints the relative error of each against tfjs."""
import json, sys, torch, torch.nn as nn, torch.nn.functional as F
from torchvision.models.regnet import BlockParams, RegNet
torch.set_default_dtype(torch.float64)
d = json.load(open(sys.argv[1]))
bb = RegNet(BlockParams.from_init_params(depth=4, w_0=16, w_a=8, w_m=2, group_width=16, se_ratio=0.25)).double()
bb.fc = nn.Identity()
for m in bb.modules():
    if isinstance(m, nn.Conv2d) and m.stride[0] == 2 and m.kernel_size[0] == 3:
        m.padding = (0, 0)
        m.register_forward_pre_hook(lambda mod, inp: (F.pad(inp[0], (0, 1, 0, 1)),))
head = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32)).double()
protos = nn.Linear(32, 32, bias=False).double()
P = {k: torch.tensor(v['data']).reshape(v['shape']) for k, v in d['params'].items()}
def t(name): return P[name]
M = {}  # torch param -> (our name, transform)
conv = lambda n: t(n).permute(3, 2, 0, 1)
M['stem.0.weight'] = conv('stem.conv.w'); M['stem.1.weight'] = t('stem.bn.gamma'); M['stem.1.bias'] = t('stem.bn.beta')
for s, depth in [(1, 1), (2, 3)]:
    for b in range(depth):
        tv = f'trunk_output.block{s}.block{s}-{b}'; us = f's{s}.b{b + 1}'
        for l in 'abc':
            M[f'{tv}.f.{l}.0.weight'] = conv(f'{us}.{l}.w'); M[f'{tv}.f.{l}.1.weight'] = t(f'{us}.{l}.bn.gamma'); M[f'{tv}.f.{l}.1.bias'] = t(f'{us}.{l}.bn.beta')
        M[f'{tv}.f.se.fc1.weight'] = t(f'{us}.se.reduce.w').t()[:, :, None, None]; M[f'{tv}.f.se.fc1.bias'] = t(f'{us}.se.reduce.b')
        M[f'{tv}.f.se.fc2.weight'] = t(f'{us}.se.expand.w').t()[:, :, None, None]; M[f'{tv}.f.se.fc2.bias'] = t(f'{us}.se.expand.b')
        if b == 0:
            M[f'{tv}.proj.0.weight'] = conv(f'{us}.proj.w'); M[f'{tv}.proj.1.weight'] = t(f'{us}.proj.bn.gamma'); M[f'{tv}.proj.1.bias'] = t(f'{us}.proj.bn.beta')
with torch.no_grad():
    for n, p in bb.named_parameters(): p.copy_(M[n])
    head[0].weight.copy_(t('swav.proj1.w').t()); head[0].bias.copy_(t('swav.proj1.b'))
    head[1].weight.copy_(t('swav.proj1.bn.gamma')); head[1].bias.copy_(t('swav.proj1.bn.beta'))
    head[3].weight.copy_(t('swav.proj2.w').t()); head[3].bias.copy_(t('swav.proj2.b'))
    protos.weight.copy_(t('swav.prototypes.w').t())
crops = [torch.tensor(c['data']).reshape(c['shape']).permute(0, 3, 1, 2) for c in d['crops']]
feats = torch.cat([bb(torch.cat(crops[0:2])), bb(torch.cat(crops[2:4]))])
z = F.normalize(head(feats), dim=1); scores = protos(z)
def sinkhorn(out, eps=0.05):
    Q = torch.exp(out / eps).t(); Q /= Q.sum(); K, B = Q.shape
    for _ in range(3):
        Q /= Q.sum(1, keepdim=True); Q /= K; Q /= Q.sum(0, keepdim=True); Q /= B
    return (Q * B).t()
bs = 8; loss = 0
for ci in range(2):
    with torch.no_grad(): q = sinkhorn(scores[bs * ci: bs * (ci + 1)].detach())
    sub = 0
    for v in [v for v in range(4) if v != ci]:
        sub -= (q * F.log_softmax(scores[bs * v: bs * (v + 1)] / 0.1, dim=1)).sum(1).mean()
    loss += sub / 3
loss /= 2
loss.backward()
print('loss torch', loss.item(), 'tfjs', d['loss'])
def rel(a, b): return ((a - b).norm() / (b.norm() + 1e-12)).item()
G = {k: torch.tensor(v) for k, v in d['grads'].items()}
def g(name, shape_fn): return shape_fn(G[name].reshape(d['params'][name]['shape']))
convg = lambda n: g(n, lambda x: x.permute(3, 2, 0, 1))
checks = [('stem.conv.w', bb.stem[0].weight.grad, convg('stem.conv.w')), ('stem.bn.gamma', bb.stem[1].weight.grad, G['stem.bn.gamma'])]
for s, depth in [(1, 1), (2, 3)]:
    for b in range(depth):
        blk = getattr(bb.trunk_output, f'block{s}')[b]; us = f's{s}.b{b + 1}'
        for l in 'abc':
            checks.append((f'{us}.{l}.w', getattr(blk.f, l)[0].weight.grad, convg(f'{us}.{l}.w')))
            checks.append((f'{us}.{l}.bn.gamma', getattr(blk.f, l)[1].weight.grad, G[f'{us}.{l}.bn.gamma']))
            checks.append((f'{us}.{l}.bn.beta', getattr(blk.f, l)[1].bias.grad, G[f'{us}.{l}.bn.beta']))
        checks.append((f'{us}.se.reduce.w', blk.f.se.fc1.weight.grad[:, :, 0, 0].t(), G[f'{us}.se.reduce.w'].reshape(d['params'][f'{us}.se.reduce.w']['shape'])))
        if b == 0: checks.append((f'{us}.proj.w', blk.proj[0].weight.grad, convg(f'{us}.proj.w')))
checks += [('swav.proj1.w', head[0].weight.grad.t(), G['swav.proj1.w'].reshape(32, 64)), ('swav.proj2.w', head[3].weight.grad.t(), G['swav.proj2.w'].reshape(64, 32)),
           ('swav.proj2.b', head[3].bias.grad, G['swav.proj2.b']), ('swav.prototypes.w', protos.weight.grad.t(), G['swav.prototypes.w'].reshape(32, 32))]
for n, a, b in checks: print(f'{n:22s} rel err {rel(b.double(), a):.2e}  |g| torch {a.norm():.3e}')
