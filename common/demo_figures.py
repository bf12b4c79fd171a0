"""The demo's pictures, drawn with PIL (no plotting library is installed with the bundles):

- :func:`comparison_png`: image | ground truth | prediction side by side, classes in colour with a legend and the
  case's Dice in the title; for a 3D case two rows, the axial slice with the most foreground and the coronal one.
- :func:`curve_png`: the mean training loss and the validation metric per epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["PANEL", "case_dice", "comparison_png", "curve_png", "load_case"]

PANEL = 256  # side of one panel in pixels: three panels make a 768 px wide picture
COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180)]


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def load_case(path: Path) -> np.ndarray:
    """A PNG/JPG as (H, W) or (H, W, 3), a NIfTI as (X, Y, Z) or (X, Y, Z, C), as stored."""
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB") if image.mode not in ("L", "I", "1") else image)
    import nibabel as nib

    return np.asarray(nib.load(str(path)).dataobj)


def case_dice(label: np.ndarray, pred: np.ndarray) -> tuple[float, list[int]]:
    """The Dice of a prediction against its label and the class values it averages: foreground against
    foreground when the prediction is binary, else the mean over the classes present in either."""
    values = sorted(set(np.unique(pred).tolist()) - {0})
    if len(values) <= 1:
        label, pred, values = label > 0, pred > 0, [1]
    scores = []
    for v in values:
        a, b = label == v, pred == v
        total = a.sum() + b.sum()
        scores.append(1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total)
    return float(np.mean(scores)), values


def _grey(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, (1, 99))
    return np.clip((image - lo) / max(hi - lo, 1e-6) * 255, 0, 255)


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8:
        return image.astype(np.float32)
    return np.stack([_grey(image.astype(np.float32))] * 3, axis=-1)


def _paint(rgb: np.ndarray, label: np.ndarray, values: Sequence[int]) -> np.ndarray:
    out = rgb.copy()
    for i, v in enumerate(values):
        mask = label == v
        out[mask] = 0.4 * out[mask] + 0.6 * np.array(COLOURS[i % len(COLOURS)], dtype=np.float32)
    return out


def _views(
    image: np.ndarray, label: np.ndarray, pred: np.ndarray
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, image, label, pred) of the 2D picture, or of the axial and coronal slices with most foreground."""
    if label.ndim == 2:
        return [("", image, label, pred)]
    volume = image[..., 0] if image.ndim == 4 else image
    z = int(np.argmax((label > 0).sum(axis=(0, 1))))
    y = int(np.argmax((label > 0).sum(axis=(0, 2))))
    return [
        (f"axial z={z}", np.rot90(volume[:, :, z]), np.rot90(label[:, :, z]), np.rot90(pred[:, :, z])),
        (f"coronal y={y}", np.rot90(volume[:, y, :]), np.rot90(label[:, y, :]), np.rot90(pred[:, y, :])),
    ]


def comparison_png(
    image: np.ndarray, label: np.ndarray, pred: np.ndarray, class_names: Mapping[int, str], title: str, out_png: Path
) -> Path:
    """Write image | ground truth | prediction (one row a view) with a legend of ``class_names`` (value -> name of
    the classes drawn) and ``title`` plus the case's Dice above; returns ``out_png``."""
    dice, values = case_dice(label, pred)
    if values == [1]:
        label, pred = (label > 0).astype(np.uint8), (pred > 0).astype(np.uint8)
    views = _views(image, label, pred)
    head, legend_h = 40, 28
    canvas = Image.new("RGB", (3 * PANEL, head + len(views) * (PANEL + 20) + legend_h), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 8), f"{title} - Dice {dice:.3f}", fill="black", font=_font(18))
    for row, (name, img, lab, prd) in enumerate(views):
        top = head + row * (PANEL + 20)
        rgb = _rgb(img)
        for col, (caption, panel) in enumerate(
            (("image", rgb), ("ground truth", _paint(rgb, lab, values)), ("prediction", _paint(rgb, prd, values)))
        ):
            tile = Image.fromarray(panel.astype(np.uint8)).resize((PANEL, PANEL), Image.NEAREST)
            canvas.paste(tile, (col * PANEL, top + 20))
            draw.text((col * PANEL + 6, top + 3), f"{caption} {name}".strip(), fill="black", font=_font(13))
    x, y = 8, canvas.height - legend_h + 6
    for i, v in enumerate(values):
        draw.rectangle((x, y, x + 14, y + 14), fill=COLOURS[i % len(COLOURS)])
        text = f"{v}: {class_names.get(v, 'foreground')}"
        draw.text((x + 20, y), text, fill="black", font=_font(13))
        x += 40 + int(draw.textlength(text, font=_font(13)))
    out_png.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_png)
    return out_png


def curve_png(
    losses: Sequence[float],
    metrics: Mapping[int, float],
    metric_name: str,
    title: str,
    out_png: Path,
    size: tuple[int, int] = (640, 400),
) -> Path:
    """Write a line chart of the mean training loss of every epoch (``losses[e - 1]``, left axis) and the
    validation metric of the epochs it was measured (``metrics[e]``, right axis, 0 to 1)."""
    width, height = size
    left, right, top, bottom = 60, 60, 40, 50
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((left, 10), title, fill="black", font=_font(16))
    draw.rectangle((left, top, width - right, height - bottom), outline="black")
    epochs = max(len(losses), max(metrics, default=1), 1)
    loss_max = max(max(losses, default=1.0), 1e-6)

    def xy(epoch: float, fraction: float) -> tuple[float, float]:
        x = left + (epoch - 1) / max(epochs - 1, 1) * (width - left - right)
        return x, height - bottom - fraction * (height - top - bottom)

    for tick in range(1, epochs + 1, max(1, epochs // 10)):
        x, y = xy(tick, 0)
        draw.line((x, y, x, y + 4), fill="black")
        draw.text((x - 4, y + 6), str(tick), fill="black", font=_font(12))
    draw.text((width // 2 - 20, height - 22), "epoch", fill="black", font=_font(13))
    for f in (0.0, 0.5, 1.0):
        _, y = xy(1, f)
        draw.text((4, y - 7), f"{f * loss_max:.3g}", fill=COLOURS[3], font=_font(12))
        draw.text((width - right + 6, y - 7), f"{f:.1f}", fill=COLOURS[0], font=_font(12))
    for values, colour, scale in (
        ([(e + 1, v) for e, v in enumerate(losses)], COLOURS[3], loss_max),
        (sorted(metrics.items()), COLOURS[0], 1.0),
    ):
        points = [xy(e, v / scale) for e, v in values]
        if len(points) > 1:
            draw.line(points, fill=colour, width=3)
        for x, y in points:
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
    draw.text((left + 8, top + 6), "training loss (left axis)", fill=COLOURS[3], font=_font(13))
    draw.text((left + 8, top + 24), f"{metric_name} (right axis)", fill=COLOURS[0], font=_font(13))
    out_png.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_png)
    return out_png
