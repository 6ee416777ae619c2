"""The SwAV multi-crop recipe (2x224 at 0.14-1, 6x96 at 0.05-0.14; jitter 0.8/0.8/0.8/0.2 p 0.8, grey p 0.2, PIL
Gaussian blur p 0.5 radius 0.1-2, as described by facebookresearch/swav) in torchvision + PIL, one thread, over a
folder of JPEGs; prints one JSON line: samples, CPU and wall seconds."""
import json, os, random, sys, time

import torch
import torchvision.transforms as T
from PIL import Image, ImageFilter

torch.set_num_threads(1)


class PILRandomGaussianBlur:
    def __init__(self, p=0.5, radius_min=0.1, radius_max=2.0):
        self.p, self.lo, self.hi = p, radius_min, radius_max

    def __call__(self, img):
        if random.random() > self.p:
            return img
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.lo, self.hi)))


def colour_distortion(s=1.0):
    jitter = T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)
    return T.Compose([T.RandomApply([jitter], p=0.8), T.RandomGrayscale(p=0.2)])


mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
transforms = []
for count, size, lo, hi in [(2, 224, 0.14, 1.0), (6, 96, 0.05, 0.14)]:
    t = T.Compose([T.RandomResizedCrop(size, scale=(lo, hi)), T.RandomHorizontalFlip(p=0.5), colour_distortion(),
                   PILRandomGaussianBlur(), T.ToTensor(), T.Normalize(mean=mean, std=std)])
    transforms += [t] * count

folder = sys.argv[1]
files = sorted(os.listdir(folder))
cpu0, wall0 = time.process_time(), time.perf_counter()
for name in files:
    with Image.open(os.path.join(folder, name)) as im:
        img = im.convert("RGB")
    crops = [t(img) for t in transforms]
print(json.dumps({"samples": len(files), "cpu": time.process_time() - cpu0, "wall": time.perf_counter() - wall0}))
