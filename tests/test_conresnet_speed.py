"""ConResNet's inference-time shortcuts give exactly the straightforward computation; the A/B script runs."""

from __future__ import annotations

import pytest
import torch

from benchmarks.conresnet import (
    _markdown,
    _worker,
    allocator_ab,
    forward_ab,
    main,
    profile_forward,
    reference_forward,
    reference_inter_slice_residual,
    whole_volume,
    window_counts,
)
from common.networks.conresnet import ConResNet, inter_slice_residual


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_inter_slice_residual_inference_path_equals_reference(axis):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 4, 6)
    expected = reference_inter_slice_residual(x, axis)
    with torch.inference_mode():
        assert torch.equal(inter_slice_residual(x, axis), expected)
    assert torch.equal(inter_slice_residual(x, axis), expected)  # no grad needed: the same one-tensor path
    xg = x.clone().requires_grad_(True)
    y = inter_slice_residual(xg, axis)  # autograd path (F.pad)
    assert torch.equal(y.detach(), expected)
    y.sum().backward()
    # d/dx_s of sum_s |x_{s+1} - x_s|: sign(x_s - x_{s-1}) - sign(x_{s+1} - x_s)
    d = torch.diff(x, dim=axis + 2).sign()
    zero = torch.zeros_like(x.narrow(axis + 2, 0, 1))
    grad = torch.cat([zero, d], axis + 2) - torch.cat([d, zero], axis + 2)
    assert torch.equal(xg.grad, grad)


def test_inter_slice_residual_single_slice_inference():
    with torch.inference_mode():
        assert torch.equal(inter_slice_residual(torch.ones(1, 2, 3, 3, 1), 2), torch.zeros(1, 2, 3, 3, 1))


def test_eval_forward_equals_straightforward_computation():
    """In-place additions, the one-tensor residual and in-place Eq. 6 change no bit of the eval output,
    with autograd off (inference path) or on (the plain path)."""
    torch.manual_seed(0)
    net = ConResNet(init_filters=8, blocks=(1, 1, 1, 1, 1)).eval()
    x = torch.randn(1, 4, 32, 32, 16)
    with torch.no_grad():
        expected = reference_forward(net, x)
    with torch.inference_mode():
        assert torch.equal(net(x), expected)
    with_grad = net(x)  # weights require grad: the out-of-place Eq. 6 and F.pad residual
    assert with_grad.requires_grad
    torch.testing.assert_close(with_grad.detach(), expected, rtol=0, atol=1e-6)
    with torch.no_grad():
        traced = torch.jit.trace(net, x)
        assert torch.equal(traced(x), expected)


def test_train_forward_backward_with_in_place_additions():
    torch.manual_seed(0)
    net = ConResNet(init_filters=8, blocks=(1, 1, 1, 1, 1)).train()
    outputs = net(torch.randn(2, 4, 16, 16, 8))
    sum(o.square().mean() for o in outputs).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_window_counts_brats_paper_roi():
    # 240 = 160 + 80: 2 windows in-plane for every overlap; 155 slices, ROI 80: 2 windows at overlap 0
    # (interval 80), 3 at 0.25 (interval 60) and 0.5 (interval 40)
    assert window_counts((240, 240, 155), (160, 160, 80), (0.0, 0.25, 0.5)) == {0.0: 8, 0.25: 12, 0.5: 12}
    assert window_counts((64, 64, 40), (32, 32, 16), (0.0, 0.5)) == {0.0: 12, 0.5: 36}


def test_forward_ab_tiny_run(capsys):
    r = forward_ab((16, 16, 8), widths="sample", repeats=1, warmup=0)
    assert r["inplace_equal"] and r["inplace_max_abs_diff"] == 0.0
    assert r["channels_last_max_abs_diff"] < 1e-4
    for case in ("inplace", "ws_cache", "channels_last"):
        assert r[case]["ratio_cpu"] > 0 and r[case]["ratio_wall"] > 0
    assert main(["forward", "--size", "16x16x8", "--widths", "sample", "--repeats", "1", "--cases", "ws_cache"]) == 0
    assert "| ws_cache | recomputed | cached |" in capsys.readouterr().out


def test_profile_and_worker_tiny_runs():
    r = profile_forward((16, 16, 8), widths="sample", top=3)
    # FLOPs of the convolutions counted: twice the network's MACs (FlopCounterMode counts the same)
    from torch.utils.flop_counter import FlopCounterMode

    net = ConResNet(init_filters=8, blocks=(1, 1, 1, 1, 1)).eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        net(torch.randn(1, 4, 16, 16, 8))
    assert r["gflop"] * 1e9 == pytest.approx(counter.get_total_flops(), rel=1e-6)
    assert "conv3d.default" in r["operators_cpu_s"] and len(r["top"]) == 3
    # getrusage's microseconds: a forward of a few milliseconds has a CPU time (os.times' 10 ms ticks gave 0)
    assert r["cpu_s"] == pytest.approx(r["user_s"] + r["sys_s"]) and r["cpu_s"] > 0
    assert r["gflop_per_cpu_s"] == pytest.approx(r["gflop"] / r["cpu_s"])
    assert r["minor_page_faults"] >= 0 and "GFLOP per CPU-second" in _markdown("profile", r)
    for train in (False, True):
        w = _worker((16, 16, 8), "sample", runs=1, train=train)
        assert len(w["runs"]) == 1 and w["runs"][0]["wall_s"] > 0 and w["peak_rss_mb"] > 0


def test_allocator_ab_tiny_run_with_the_switch():
    allocators = {"glibc default": {}, "keep_freed_memory": {"keep_freed_memory": "true"}}
    r = allocator_ab((16, 16, 8), "sample", repeats=1, runs=1, allocators=allocators)
    assert r["glibc default"]["n"] == r["keep_freed_memory"]["n"] == 1
    switched, baseline = r["keep_freed_memory"], r["glibc default"]
    assert switched["ratio_cpu"] == pytest.approx(switched["cpu_s"] / baseline["cpu_s"])
    assert switched["ratio_wall"] == pytest.approx(switched["wall_s"] / baseline["wall_s"])
    table = _markdown("allocator", r)
    assert "| keep_freed_memory |" in table and "load average" in table


def test_whole_volume_tiny_run():
    r = whole_volume((24, 24, 12), "sample", roi=(16, 16, 8), threads=1)
    assert r["glibc default"]["output_shape"] == r["keep_freed_memory"]["output_shape"] == [1, 3, 24, 24, 12]
    assert r["glibc default"]["inferer"]["roi_size"] == [16, 16, 8] and r["ratio_cpu_s"] > 0
    assert "| keep_freed_memory |" in _markdown("volume", r)
