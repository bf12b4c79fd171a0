"""The empty and undefined cases of every metric of an evaluation, written beside MONAI's ``MetricsSaver`` files.

A mean says nothing of the cases behind it: a case whose label or prediction is empty scores by a convention
(0 or 1 for Dice, a penalty for HD95, NaN for sensitivity), and NaN scores are left out of MONAI's mean. The
:class:`EmptyCasesSaver` handler writes ``metrics_empty_cases.json`` to the output folder with, per metric:

- ``scores``: how many scores (cases times channels) the metric holds, ``in_mean`` how many of them count in
  its mean (MONAI's reduction leaves NaN out), ``undefined`` how many are NaN and ``infinite`` how many are inf
  (a metric that buffers more than one number a case, such as a curve, has ``per_case_scores: false`` and the
  counts below only);
- ``label_empty``, ``prediction_empty``, ``both_empty``: how many scores come from a case and channel whose label
  only, prediction only, or both are empty, and which values they got (``values``: each distinct value with its
  count, NaN written ``"nan"``; the range and mean where more than ten values differ).

Emptiness is judged on the evaluator's binarised ``pred`` and ``label`` (values above 0.5), channel by channel,
on the channels the metric scores: the metric's ``include_background=False`` drops channel 0, and ``channels``
names them for a metric that sees a slice of the channels (ConResNet's regions; names of metrics an override
removed are ignored). A metric with one score per image over several channels and no ``include_background``
(MONAI's ``MAEMetric``) is matched with the image's channels together; any other mismatch is an error.

The per-case scores are the metric's own buffer (``metric_fn.get_buffer()``, synchronised across ranks like the
metric); MONAI's ``ConfusionMatrix`` buffers confusion counts, turned into the per-case score of its
``metric_name`` by ``monai.metrics.compute_confusion_matrix_metric``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from monai.handlers import IgniteMetricHandler, from_engine
from monai.metrics import ConfusionMatrixMetric, Cumulative, compute_confusion_matrix_metric

from common.workflows.atomic import atomic_path

__all__ = ["EmptyCasesSaver", "summarise_empty_cases"]

_MAX_LISTED_VALUES = 10


def _values(scores: torch.Tensor) -> dict[str, object]:
    """Each distinct value with its count (at most ten), or the range and mean of the finite values."""
    distinct, counts = torch.unique(scores.double(), return_counts=True)  # NaNs come last, each on its own
    listed: dict[str, int] = {}
    for value, count in zip(distinct.tolist(), counts.tolist(), strict=True):
        key = "nan" if math.isnan(value) else f"{value:.6g}"
        listed[key] = listed.get(key, 0) + count
    if len(listed) <= _MAX_LISTED_VALUES:
        return {"values": listed}
    finite = scores[torch.isfinite(scores)].double()
    summary: dict[str, object] = {"distinct_values": len(listed), "nan": int(torch.isnan(scores).sum())}
    if finite.numel():
        summary.update(min=finite.min().item(), max=finite.max().item(), mean=finite.mean().item())
    return summary


def summarise_empty_cases(scores: torch.Tensor | None, pred_any: torch.Tensor, label_any: torch.Tensor) -> dict:
    """The record of one metric: ``scores``, ``pred_any`` and ``label_any`` of one shape ``(N, C)``, the last two
    telling whether the prediction and the label of each case and channel have any foreground. ``scores`` is
    ``None`` for a metric without one score a case (a dataset-level curve, such as CHNet's max E-measure): the
    record then has the counts only."""
    if pred_any.shape != label_any.shape or (scores is not None and scores.shape != pred_any.shape):
        got = None if scores is None else tuple(scores.shape)
        raise ValueError(
            f"scores {got}, pred_any {tuple(pred_any.shape)} and label_any {tuple(label_any.shape)} must have one "
            "shape."
        )
    pred_any, label_any = pred_any.cpu().bool(), label_any.cpu().bool()
    record: dict[str, object] = {"scores": pred_any.numel()}
    if scores is None:
        record["per_case_scores"] = False
    else:
        scores = scores.detach().cpu().double()
        nan = torch.isnan(scores)
        record.update(in_mean=int((~nan).sum()), undefined=int(nan.sum()), infinite=int(torch.isinf(scores).sum()))
    for name, where in (
        ("label_empty", ~label_any & pred_any),
        ("prediction_empty", label_any & ~pred_any),
        ("both_empty", ~label_any & ~pred_any),
    ):
        values = _values(scores[where]) if scores is not None and where.any() else {}
        record[name] = {"count": int(where.sum()), **values}
    return record


class EmptyCasesSaver:
    """Ignite handler writing ``metrics_empty_cases.json`` (see the module docstring) when an evaluation ends.

    Attach it after the metrics (in ``val_handlers``, which MONAI's workflows attach after the metrics, so that
    the metrics are computed first at the end of the epoch), and on every rank, like ``MetricsSaver``: the
    emptiness of the cases is gathered across ranks as the metrics' scores are; rank 0 writes the file.

    Args:
        save_dir: the output folder (``MetricsSaver``'s).
        metrics: the metric handlers by name, the evaluator's own objects (in a bundle config
            ``"$dict(@validate#key_metric, **@validate#additional_metrics)"``).
        output_transform: gives ``(pred, label)`` of a batch from ``engine.state.output``, lists of
            ``(C, spatial...)`` or ``(B, C, spatial...)`` tensors; by default ``from_engine(["pred", "label"])``.
        channels: per metric name, the channels of ``pred``/``label`` it scores, where it scores a slice of them.
        filename: the name of the file in ``save_dir``.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        metrics: Mapping[str, IgniteMetricHandler],
        output_transform: Callable | None = None,
        channels: Mapping[str, Sequence[int]] | None = None,
        filename: str = "metrics_empty_cases.json",
    ) -> None:
        self.save_dir = save_dir
        self.metrics = dict(metrics)
        self.output_transform = output_transform or from_engine(["pred", "label"])
        self.channels = {name: list(c) for name, c in (channels or {}).items()}  # names of absent metrics ignored
        self.filename = filename
        self._flags = Cumulative()  # (N, C, 2): prediction any, label any

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self._flags.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._record)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._save)

    def _record(self, engine: Engine) -> None:
        y_pred, y = self.output_transform(engine.state.output)  # per case (C, spatial...), or batch tensors
        found = [
            torch.stack([(p > 0.5).flatten(1).any(1), (t > 0.5).flatten(1).any(1)], -1).to("cpu", torch.uint8)
            for p, t in zip(y_pred, y, strict=True)
        ]
        self._flags.extend(torch.stack(found))

    def _scores(self, name: str, handler: IgniteMetricHandler) -> torch.Tensor:
        scores = handler.metric_fn.get_buffer()
        if isinstance(handler.metric_fn, ConfusionMatrixMetric):
            (metric_name,) = handler.metric_fn.metric_name  # a tuple; the handler records the first only
            scores = compute_confusion_matrix_metric(metric_name, scores)
        if not isinstance(scores, torch.Tensor) or scores.ndim < 2:
            raise ValueError(f"EmptyCasesSaver: metric {name!r} holds no (cases, channels, ...) buffer.")
        return scores

    def _match(self, name: str, handler: IgniteMetricHandler, flags: torch.Tensor, width: int) -> torch.Tensor:
        """The flags ``(N, width, 2)`` of the channels the metric scores."""
        channels = flags.shape[1]
        if name in self.channels:
            picked = flags[:, self.channels[name]]
        elif width == channels:
            picked = flags
        elif width == channels - 1 and not getattr(handler.metric_fn, "include_background", True):
            picked = flags[:, 1:]
        elif width == 1 and not hasattr(handler.metric_fn, "include_background"):  # one score an image (MAE)
            picked = flags.any(1, keepdim=True)
        else:
            raise ValueError(
                f"EmptyCasesSaver: metric {name!r} gives {width} scores a case for {channels} channels; name the "
                "channels it scores in `channels`."
            )
        if picked.shape[1] != width:
            raise ValueError(
                f"EmptyCasesSaver: metric {name!r} gives {width} scores a case, channels {picked.shape[1]}."
            )
        return picked

    def report(self) -> dict[str, dict]:
        """The record of every metric, from the buffers of the epoch that ended."""
        flags = self._flags.get_buffer()
        if not isinstance(flags, torch.Tensor):
            raise ValueError("EmptyCasesSaver: no iteration was recorded.")
        flags = flags.bool()
        out = {}
        for name, handler in self.metrics.items():
            scores = self._scores(name, handler)
            picked = self._match(name, handler, flags, scores.shape[1])
            if picked.shape[0] != scores.shape[0]:
                raise ValueError(
                    f"EmptyCasesSaver: metric {name!r} holds {scores.shape[0]} cases, {picked.shape[0]} were recorded."
                )
            per_case = scores if scores.ndim == 2 else None  # more dimensions: a curve a case, no score a case
            out[name] = summarise_empty_cases(per_case, picked[..., 0], picked[..., 1])
        return out

    def _save(self, engine: Engine) -> None:
        report = self.report()
        if idist.get_rank() != 0:
            return
        with atomic_path(os.path.join(self.save_dir, self.filename)) as tmp:
            tmp.write_text(json.dumps(report, indent=4) + "\n")
