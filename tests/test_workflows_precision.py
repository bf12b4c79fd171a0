"""The bf16 autocast and torch.compile switches (``amp_bf16``, ``compile``) of the bundles' workflows."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import bundle_parser
from ignite.engine import Events
from monai.inferers import SimpleInferer

from common.bundle.contract import REPO_ROOT
from common.workflows.precision import AutocastInferer, compiled


def _with_key(key: str) -> list[str]:
    """The bundles whose train.json has the top-level switch ``key`` (only where it measured faster)."""
    return sorted(
        p.parent.parent.name
        for p in (REPO_ROOT / "bundles").glob("*/configs/train.json")
        if f'\n    "{key}": false,' in p.read_text()
    )


BF16, COMPILE = _with_key("amp_bf16"), _with_key("compile")


class TwoHeads(torch.nn.Module):
    """A conv with a float and an integer output, as in a tuple a training-mode network may return."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y, y.argmax(1)


def test_autocast_inferer_matches_autocast_by_hand():
    torch.manual_seed(0)
    net, x = TwoHeads().eval(), torch.randn(2, 2, 8, 8)
    off = AutocastInferer(SimpleInferer())(x, net)
    assert torch.equal(off[0], net(x)[0]) and off[0].dtype == torch.float32  # disabled: the inferer itself
    on = AutocastInferer(SimpleInferer(), enabled=True)(x, net)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        by_hand = net(x)
    assert by_hand[0].dtype == torch.bfloat16
    assert isinstance(on, tuple) and on[0].dtype == torch.float32 and torch.equal(on[0], by_hand[0].float())
    assert on[1].dtype == torch.long and torch.equal(on[1], by_hand[1])  # integer outputs untouched


def test_switches_where_measured_faster():
    """benchmarks/README.md: bf16 is faster everywhere but changes ConResNet's gradients (cosine 0.24 to fp32);
    torch.compile gains nothing for Crosslink-Net, slows IFE's forward and fails on IFE's training step."""
    assert BF16 == [
        "chnet_polyp_segmentation",
        "crosslinknet_covid_ct_segmentation",
        "eaanet_brats_mri_segmentation",
        "ife_dichotomous_segmentation",
    ]
    assert COMPILE == ["chnet_polyp_segmentation", "conresnet_brats_mri_segmentation", "eaanet_brats_mri_segmentation"]


def test_switches_read_command_line_strings():
    net = torch.nn.Linear(2, 2)
    assert compiled(net, "false") is net and compiled(net, False) is net
    assert compiled(net, "true")._orig_mod is net
    assert AutocastInferer(SimpleInferer(), "False").enabled is False
    with pytest.raises(ValueError, match="amp_bf16 must be true or false, not 'on'; e.g. --amp_bf16 true"):
        AutocastInferer(SimpleInferer(), "on")
    with pytest.raises(ValueError, match="compile must be true or false"):
        compiled(net, "2")


def test_monai_engines_compile_argument_takes_a_command_line_false_as_true():
    """Why the bundles keep ``compiled`` rather than the engines' own ``compile=`` (MONAI 1.6.1): the engines test
    ``compile`` with a plain ``if``, so ``--compile false`` (the string) would compile. If MONAI starts parsing the
    string, this fails: then swap, after measuring that the outputs are equal (with torch 2.14.1 on a CPU,
    ``compile=True`` training of a small MONAI BasicUNet stopped with an inductor error where ``compiled`` ran)."""
    from monai.engines import SupervisedEvaluator

    net = torch.nn.Linear(2, 2)
    engine = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=[], network=net, compile="false")
    assert isinstance(engine.network, torch._dynamo.eval_frame.OptimizedModule)  # compiled, against the switch
    assert compiled(net, "false") is net


@pytest.mark.parametrize("bundle", sorted(set(BF16) | set(COMPILE)))
def test_switches_are_off_by_default_and_wire_every_engine(bundle):
    """Trainer and validation evaluator of train.json, and the evaluator of inference.json."""
    train = bundle_parser(bundle, "train.json")
    keys = [key for key, bundles in (("amp_bf16", BF16), ("compile", COMPILE)) if bundle in bundles]
    assert all(train[key] is False for key in keys)
    for engine in ("train#trainer", "validate#evaluator"):
        if "amp_bf16" in keys:
            inferer = train[f"{engine}#inferer"]
            inferer = train[inferer[1:]] if isinstance(inferer, str) and inferer.startswith("@") else inferer
            assert inferer["_target_"] == "common.workflows.precision.AutocastInferer"
            assert inferer["enabled"] == "@amp_bf16" and "amp" not in train[engine]  # one mechanism
        if "compile" in keys:
            assert train[f"{engine}#network"] == {
                "_target_": "common.workflows.precision.compiled",
                "network": "@network",
                "enabled": "@compile",
            }
    inference = bundle_parser(bundle, "inference.json", **dict.fromkeys(keys, "true"))  # as from the command line
    network = inference.get_parsed_content("evaluator#network")
    assert isinstance(network, torch._dynamo.eval_frame.OptimizedModule) == ("compile" in keys)
    assert getattr(inference.get_parsed_content("evaluator#inferer"), "enabled", False) == ("amp_bf16" in keys)


def test_bf16_training_runs_end_to_end_on_sample_data(tmp_path, sample_root):
    """EAA-Net (where bf16 is faster on this CPU) trains an epoch with validation under ``amp_bf16``: the convs
    run in bf16, the loss and metrics see float32 predictions and the checkpoint holds float32 weights."""
    from monai.bundle import ConfigWorkflow

    from common.data import make_sample_data

    bundle = REPO_ROOT / "bundles" / "eaanet_brats_mri_segmentation"
    configs = bundle / "configs"
    dataset_dir = make_sample_data("brain_mri", sample_root / "brain_mri").parent
    workflow = ConfigWorkflow(
        config_file=[str(configs / "train.json"), str(configs / "sample_data.json")],
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        workflow_type=None,
        bundle_root=str(bundle),
        dataset_dir=str(dataset_dir),
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "eval"),
        max_epochs=1,
        amp_bf16="true",
    )
    workflow.initialize()
    network = workflow.parser.get_parsed_content("network")
    conv_dtypes = set()
    first_conv = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d))
    # hooked after the first iteration: before it, the training memory check probes the network once in float32
    trainer = workflow.parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED(once=1),
        lambda engine: first_conv.register_forward_hook(lambda m, i, o: conv_dtypes.add(o.dtype)),
    )
    workflow.run()
    assert conv_dtypes == {torch.bfloat16}
    assert trainer.state.epoch == 1 and torch.isfinite(torch.as_tensor(trainer.state.output[0]["loss"]))
    assert trainer.state.output[0]["pred"].dtype == torch.float32
    metric = workflow.parser.get_parsed_content("validate#evaluator").state.metrics["val_mean_dice"]
    assert 0.0 <= metric <= 1.0
    weights = torch.load(tmp_path / "models" / "checkpoint_final.pt", map_location="cpu")["model"]
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float32}
    workflow.finalize()
    json.dumps(trainer.state.metrics)  # plain floats
