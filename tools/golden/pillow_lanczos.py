#!/usr/bin/env python3
"""Cross-check cases for PureFlux's LanczosResize: Pillow's Image.resize(size, LANCZOS) on seeded RGB and RGBA images.

Writes tests/golden/image/pillow_lanczos.safetensors (tensors uint8 HWC):
  rgb.{i}.input   [h,w,3]   rgb.{i}.output   [oh,ow,3]   = resize(RGB image)
  rgba.{i}.input  [h,w,4]   rgba.{i}.output  [oh,ow,4]   = resize(RGBA image) (Pillow premultiplies alpha)
Metadata key "pillow" records the Pillow version used. Pillow's 8-bit resampler (src/libImaging/Resample.c) and its
RGBA<->RGBa conversions are unchanged in substance from 9.4.0 to 11.1.0 (the version diffusers' goldens used), so any
of these versions gives the same bytes. Run: python3 tools/golden/pillow_lanczos.py  (needs numpy and Pillow).
"""
import json, os, struct, sys
import numpy as np
import PIL
from PIL import Image

RGB_CASES = [  # (w, h) -> (ow, oh)
    ((37, 29), (13, 7)),     # downscale both
    ((37, 29), (100, 61)),   # upscale both
    ((37, 29), (37, 5)),     # width unchanged: no horizontal pass
    ((37, 29), (5, 29)),     # height unchanged: no vertical pass
    ((64, 48), (200, 3)),    # up x, strong down y
    ((200, 130), (21, 13)),  # ~10x down: wide support
    ((150, 110), (102, 75)), # the diffusers area case's ratio, different content
    ((9, 640), (64, 64)),    # up x, 10x down y
]
RGBA_CASES = [
    ((37, 29), (13, 7)),
    ((37, 29), (100, 61)),
    ((150, 110), (102, 75)),
    ((80, 70), (80, 33)),
]


def image(rng, w, h, channels):
    # half noise, half smooth gradient, so both edges and ramps are exercised
    noise = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = ((xx * 255 // max(w - 1, 1) + yy * 97 // max(h - 1, 1)) % 256).astype(np.uint8)
    img = noise.copy()
    img[:, : w // 2, :3] = ramp[:, : w // 2, None]
    if channels == 4:  # alpha with exact 0 and 255 runs and everything between
        a = rng.integers(0, 256, size=(h, w), dtype=np.uint8)
        a[: h // 3] = 255
        a[h // 3 : h // 3 + 2] = 0
        img[..., 3] = a
    return img


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "image", "pillow_lanczos.safetensors")
    rng = np.random.default_rng(20250101)
    tensors = {}
    for i, ((w, h), size) in enumerate(RGB_CASES):
        x = image(rng, w, h, 3)
        tensors[f"rgb.{i}.input"] = x
        tensors[f"rgb.{i}.output"] = np.asarray(Image.fromarray(x, "RGB").resize(size, Image.LANCZOS))
    for i, ((w, h), size) in enumerate(RGBA_CASES):
        x = image(rng, w, h, 4)
        tensors[f"rgba.{i}.input"] = x
        tensors[f"rgba.{i}.output"] = np.asarray(Image.fromarray(x, "RGBA").resize(size, Image.LANCZOS))
    header, offset, blobs = {"__metadata__": {"pillow": PIL.__version__, "numpy": np.__version__}}, 0, []
    for name in sorted(tensors):
        b = np.ascontiguousarray(tensors[name]).tobytes()
        header[name] = {"dtype": "U8", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    print(f"wrote {out}: {len(tensors)} tensors, Pillow {PIL.__version__}")


if __name__ == "__main__":
    main()
