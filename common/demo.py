"""The ``demo`` command: on the built-in sample data, for every bundle (or one), evaluate the untrained network,
train briefly, evaluate again, infer, and draw the pictures.

What the user watches is one progress bar a bundle and phase (Ignite's tqdm ``ProgressBar``: train with epoch,
iteration, loss and time left; evaluate; infer); the workflows' full logs go to ``<out_dir>/demo.log``. It ends with
a table (bundle, metric before -> after, time, outputs) and the list of pictures: per bundle (and variant)
``<case>_comparison.png`` (image | ground truth | prediction of the first validation case, Dice in the title) and
``training_curve.png`` (loss and validation metric per epoch).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from common.bundle.contract import BundleContract, bundle_dirs
from common.demo_figures import comparison_png, curve_png, load_case

__all__ = ["FILE_LOGGING_CONF", "LOG_NAME", "console_to_file", "run_demo"]

LOG_NAME = "demo.log"
FILE_LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=file

[formatters]
keys=full

[logger_root]
level=INFO
handlers=file

[handler_file]
class=FileHandler
level=INFO
formatter=full
args=({log!r}, "a")

[formatter_full]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""


def _read_metrics(path: Path) -> dict[str, float]:
    with path.open() as f:
        return {row[0]: float(row[1]) for row in csv.reader(f) if len(row) >= 2}


def _variants(contract: BundleContract) -> dict[str, dict]:
    """``demo_variants`` of ``sample_data.json`` (name -> key overrides, e.g. a baseline and the paper's module),
    or the bundle as it is."""
    sample = json.loads(Path(contract.config("sample_data.json")).read_text())
    return sample.get("demo_variants") or {"": {}}


def console_to_file() -> None:
    """Send every logger's records to the root logger's file only: MONAI and its handlers give some loggers their
    own console handler (``StatsHandler``, ``monai.data.image_writer``), which would scroll between the bars."""
    import logging

    for logger in [logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict)]:
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


class _Progress:
    """The ``before_run`` of a workflow: a progress bar on each of its engines that exist, and, for training, the
    mean loss of every epoch and the validation key metric of every validated epoch (for the curve)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.losses: list[float] = []
        self.metrics: dict[int, float] = {}
        self.metric_name = ""

    def __call__(self, workflow) -> None:
        from ignite.engine import Events
        from ignite.handlers import ProgressBar
        from monai.handlers import from_engine

        parser = workflow.parser
        run = str(parser["run"]).replace("::", "#")  # MONAI may store "#" of ids in expressions as "::"
        if "train#trainer" not in run:
            evaluate = "validate#evaluator" in run
            evaluator = parser.get_parsed_content("validate#evaluator" if evaluate else "evaluator")
            ProgressBar(persist=True, desc=f"{self.label} {'evaluate' if evaluate else 'infer'}").attach(evaluator)
            console_to_file()  # after the engines are made: their handlers' loggers exist then
            return
        trainer = parser.get_parsed_content("train#trainer")
        evaluator = parser.get_parsed_content("validate#evaluator")
        console_to_file()
        loss = from_engine(["loss"], first=True)
        ProgressBar(persist=True, desc=f"{self.label} train").attach(
            trainer, output_transform=lambda o: {"loss": loss(o)}
        )
        ProgressBar(persist=False, desc=f"{self.label} validate").attach(evaluator)
        running: list[float] = []
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: running.append(float(loss(e.state.output))))

        def epoch_done(engine) -> None:
            self.losses.append(sum(running) / max(len(running), 1))
            running.clear()

        def validated(engine) -> None:
            self.metric_name = engine.state.key_metric_name
            self.metrics[trainer.state.epoch] = float(engine.state.metrics[self.metric_name])

        trainer.add_event_handler(Events.EPOCH_COMPLETED, epoch_done)
        evaluator.add_event_handler(Events.COMPLETED, validated)


def _run(contract: BundleContract, variant: dict, label: str, epochs: int | None, logging_file: str) -> dict:
    """Evaluate untrained, train, evaluate, infer on the first validation case and the test images, draw."""
    import torch

    work = contract.work_dir
    overrides = dict(contract.overrides(), **variant)
    models = work / "models"
    models.mkdir(parents=True, exist_ok=True)
    net = contract.parser("train.json", "sample_data.json", **overrides).get_parsed_content("network_def")
    torch.save(net.state_dict(), models / "model.pt")

    def evaluate() -> dict[str, float]:
        """Evaluate the weights in ``models/model.pt`` on the validation cases; their metrics."""
        contract.workflow(
            "train.json",
            "evaluate.json",
            "sample_data.json",
            before_run=_Progress(label),
            logging_file=logging_file,
            **overrides,
        )
        return _read_metrics(work / "eval" / "metrics.csv")

    before = evaluate()
    training = _Progress(label)
    contract.workflow(
        "train.json",
        "sample_data.json",
        before_run=training,
        logging_file=logging_file,
        **overrides,
        **({"max_epochs": epochs} if epochs else {}),
    )
    after = evaluate()

    dataset = contract.dataset_dir()
    content = json.loads((dataset / "dataset.json").read_text())
    case = {k: str(dataset / v) for k, v in content["validation"][0].items()}
    images = [{"image": case["image"]}] + [{"image": str(dataset / t["image"])} for t in content.get("test", [])]
    contract.workflow(
        "inference.json",
        "sample_data.json",
        before_run=_Progress(label),
        logging_file=logging_file,
        **dict(contract.overrides("predictions"), **variant, datalist=images),
    )
    image = Path(case["image"])
    stem = image.name.split(".")[0]
    pred = next((work / "predictions" / stem).glob(f"{stem}_seg.*"))
    meta = json.loads(Path(contract.meta_file).read_text())
    channels = meta["network_data_format"]["outputs"]["pred"].get("channel_def", {})
    names = {int(v): n for v, n in content.get("labels", {}).items()}
    names[1] = names.get(1) if len(names) > 2 else list(channels.values())[-1] if channels else "foreground"
    picture = comparison_png(
        load_case(image),
        load_case(Path(case["label"])),
        load_case(pred),
        names,
        f"{label}: {stem}",
        work / f"{stem}_comparison.png",
    )
    curve = curve_png(
        training.losses,
        training.metrics,
        training.metric_name or "validation metric",
        f"{label}: training",
        work / "training_curve.png",
    )
    return {"before": before, "after": after, "pictures": [picture, curve]}


def run_demo(bundle_paths: list[Path] | None, out_dir: str, epochs: int | None) -> list[dict]:
    """The demo of the bundles ``bundle_paths`` (all when ``None``) into ``out_dir``; prints the table and the
    pictures and returns one row a bundle (and variant): title, before, after, seconds, work folder, pictures."""
    root = Path(out_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    log = root / LOG_NAME
    conf = root / "logging.conf"
    conf.write_text(FILE_LOGGING_CONF.format(log=str(log)))
    print(f"full logs: {log}", flush=True)
    rows = []
    for path in bundle_paths or bundle_dirs():
        first = BundleContract(path, root / path.name, root / "sample_data")
        first.dataset_dir()
        for variant, keys in _variants(first).items():
            contract = BundleContract(path, root / path.name / variant, root / "sample_data")
            title = f"{path.name} [{variant}]" if variant else path.name
            started = time.monotonic()
            result = _run(contract, keys, title, epochs, str(conf))
            rows.append(dict(result, title=title, seconds=time.monotonic() - started, work=contract.work_dir))

    print()
    table = [("bundle", "metric: untrained -> trained", "time", "outputs")]
    for row in rows:
        metrics = "; ".join(f"{k} {row['before'].get(k, float('nan')):.3f} -> {v:.3f}" for k, v in row["after"].items())
        table.append((row["title"], metrics, f"{row['seconds']:.0f} s", str(row["work"])))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print("\npictures:")
    for row in rows:
        for picture in row["pictures"]:
            print(f"  {picture}")
    print(f"full logs: {log}")
    return rows
