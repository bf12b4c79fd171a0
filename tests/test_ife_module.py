"""IFE channel scores (Eq. 1, Eq. 2 / Algorithm 1) and the top-r selection of Eq. 3."""

import math

import pytest
import torch

from common.networks.ife import (
    IFE,
    _log2_count_sums,
    _log2_count_sums_by_sort,
    _pair_codes,
    curvature_kernel,
    curvature_score,
    descending_order,
    entropy_score,
    mean_curvature,
)

K2 = torch.tensor([[-1, 5, -1], [5, -16, 5], [-1, 5, -1]], dtype=torch.float64) / 16


def checkerboard(*shape: int) -> torch.Tensor:
    grids = torch.meshgrid(*[torch.arange(s) for s in shape], indexing="ij")
    return (sum(grids) % 2).double()


def test_curvature_kernels():
    assert torch.equal(curvature_kernel(2), K2)
    k3 = curvature_kernel(3)
    assert k3[1, 1, 1] == -1 and abs(k3.sum()) < 1e-12
    assert torch.allclose(k3[1, 1, 0], torch.tensor(5 / 24, dtype=torch.float64))  # face neighbour
    assert torch.allclose(k3[1, 0, 0], torch.tensor(-1 / 48, dtype=torch.float64))  # edge neighbour
    assert k3[0, 0, 0] == 0  # corner
    with pytest.raises(ValueError, match="spatial_dims"):
        curvature_kernel(1)


def test_curvature_map_hand_computed():
    # a unit impulse gives the (symmetric) kernel itself
    delta = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    delta[0, 0, 2, 2] = 1
    assert torch.allclose(mean_curvature(delta)[0, 0], K2)
    assert math.isclose(curvature_score(delta).item(), 4 / 16 + 20 / 16 + 1)
    # planes have zero curvature; x^2 has K * x^2 = sum_a K_ab a^2 = 6/16 everywhere
    rows = torch.arange(6, dtype=torch.float64)[:, None].expand(6, 7)
    ramp = torch.stack([rows, rows + 2 * torch.arange(7.0, dtype=torch.float64)])[None]
    assert torch.allclose(mean_curvature(ramp), torch.zeros(1, 2, 4, 5, dtype=torch.float64), atol=1e-12)
    square = (rows**2)[None, None]
    assert torch.allclose(mean_curvature(square), torch.full((1, 1, 4, 5), 6 / 16, dtype=torch.float64))
    assert math.isclose(curvature_score(square).item(), 20 * 6 / 16)
    # 3D: impulse -> 3D kernel, z^2 -> 2 * 5/24 (faces) - 8 * 1/48 (edges) = 1/4 everywhere
    delta3 = torch.zeros(1, 1, 5, 5, 5, dtype=torch.float64)
    delta3[0, 0, 2, 2, 2] = 1
    assert torch.allclose(mean_curvature(delta3)[0, 0], curvature_kernel(3))
    z2 = (torch.arange(5, dtype=torch.float64) ** 2)[:, None, None].expand(5, 4, 6)[None, None]
    assert torch.allclose(mean_curvature(z2), torch.full((1, 1, 3, 2, 4), 0.25, dtype=torch.float64))


def test_entropy_known_values():
    # constant channel: one (i, j) pair -> 0 bits, in 2D and 3D, whatever the constant
    assert torch.equal(entropy_score(torch.full((2, 3, 7, 9), 4.2)), torch.zeros(2, 3, dtype=torch.float64))
    assert torch.equal(entropy_score(torch.zeros(1, 1, 4, 4, 4)), torch.zeros(1, 1, dtype=torch.float64))
    # two-valued checkerboard: centre 0 or 1 with 8-neighbour mean 1/2 -> two equally frequent pairs, 1 bit;
    # unchanged by a positive affine rescaling of the channel
    board = checkerboard(6, 6)[None, None]
    assert entropy_score(board).item() == pytest.approx(1.0, abs=1e-12)
    assert entropy_score(3 * board - 7).item() == pytest.approx(1.0, abs=1e-12)
    # 3D checkerboard: pairs (0, 14/26) and (1, 12/26), 4 windows each
    assert entropy_score(checkerboard(4, 4, 4)[None, None]).item() == pytest.approx(1.0, abs=1e-12)
    # a ramp of 5 columns gives 3 distinct windows per row -> log2(3)
    ramp = torch.arange(5.0)[None, :].expand(6, 5)[None, None]
    assert entropy_score(ramp).item() == pytest.approx(math.log2(3), abs=2**-29)  # fixed point, 2**-30 bits


def test_entropy_uniform_noise():
    # i.i.d. U(0, 1): centre and neighbour mean are independent, so E = H(i) + H(j) with H(i) = 8 bits and
    # j the 256-level quantisation of the mean of 8 uniforms (Irwin-Hall distribution of their sum)
    def irwin_hall_cdf(x: float, n: int = 8) -> float:
        x = min(max(x, 0.0), float(n))
        terms = ((-1) ** k * math.comb(n, k) * (x - k) ** n for k in range(int(math.floor(x)) + 1))
        return sum(terms) / math.factorial(n)

    p = [irwin_hall_cdf(8 * (k + 1) / 256) - irwin_hall_cdf(8 * k / 256) for k in range(256)]
    expected = 8 - sum(q * math.log2(q) for q in p if q > 0)  # 14.7539 bits
    noise = torch.rand(1, 1, 1026, 1026, generator=torch.Generator().manual_seed(0))
    assert entropy_score(noise).item() == pytest.approx(expected, abs=0.05)  # plug-in bias ~0.03 bits at 1M windows
    assert entropy_score(noise, bins=2).item() <= 2.0


def test_scores_reject_small_maps():
    with pytest.raises(ValueError, match=">= 3"):
        entropy_score(torch.zeros(1, 1, 2, 8))
    with pytest.raises(ValueError, match="feature map"):
        curvature_score(torch.zeros(1, 8, 8))


@pytest.mark.parametrize("mode", ["curvature", "entropy"])
def test_top_r_per_sample(mode):
    # channel c of sample 0 has score increasing with c, sample 1 decreasing; channel 4 is a copy of channel 3
    if mode == "curvature":
        base = (torch.arange(8.0)[:, None] ** 2).expand(8, 8)
        levels = [base * s for s in (1, 2, 3, 4)]
    else:
        g = torch.Generator().manual_seed(1)
        # constant (0 bits) < checkerboard (1 bit) < random binary < uniform noise
        levels = [torch.zeros(8, 8), checkerboard(8, 8), torch.rand(8, 8, generator=g) > 0.5]
        levels = [lv.float() for lv in levels] + [torch.rand(8, 8, generator=g)]
    sample0 = torch.stack(levels + [levels[3]])
    sample1 = torch.stack(levels[::-1] + [levels[0]])
    x = torch.stack([sample0, sample1])
    scores = IFE(2, 5, mode).score(x)
    assert (scores[0, :4].diff() > 0).all() and (scores[1, :4].diff() < 0).all()
    ife = IFE(2, 5, mode, ratio=0.6)
    assert ife.num_selected == 3 and ife.out_channels == 8
    y = ife(x)
    assert y.shape == (2, 8, 8, 8)
    assert torch.equal(y[:, :5], x)
    # highest score first; the tie between channels 3 and 4 (sample 0) goes to the lower index
    assert torch.equal(y[0, 5:], x[0, [3, 4, 2]])
    assert torch.equal(y[1, 5:], x[1, [0, 1, 2]])
    assert torch.equal(ife(x), y)  # deterministic


def test_ife_gradient_and_modes():
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    ife = IFE(2, 4, "curvature", ratio=0.5)
    ife(x).sum().backward()
    counts = x.grad[:, :, 0, 0]
    assert sorted(counts[0].tolist()) == [1, 1, 2, 2]  # kept channels receive the gradient twice
    assert IFE(2, 4, "none", ratio=0.5)(x) is x
    assert IFE(2, 4, "entropy", ratio=0.0)(x) is x
    assert IFE(3, 4, "entropy", ratio=0.75)(torch.randn(1, 4, 4, 5, 6)).shape == (1, 7, 4, 5, 6)
    with pytest.raises(ValueError, match="ratio"):
        IFE(2, 4, "curvature", ratio=1.5)
    with pytest.raises(ValueError, match="mode"):
        IFE(2, 4, "texture")
    with pytest.raises(ValueError, match="in_channels"):
        IFE(2, 4, "curvature")(torch.randn(1, 5, 6, 6))


def entropy_by_unique(x: torch.Tensor, bins: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The straightforward entropy of the pair codes: ``unique`` counts and float64 ``-sum p log2 p`` (the previous
    implementation's arithmetic), and the exact rank of every channel, from ``prod n**n`` in integers."""
    b, c = x.shape[:2]
    entropies, products = [], []
    for codes in _pair_codes(x, bins):  # the quantisation is checked on hand-worked maps above
        counts = codes.unique(return_counts=True)[1]
        p = counts.double() / counts.sum()
        entropies.append(-(p * torch.log2(p)).sum())
        products.append(math.prod(n**n for n in counts.tolist()))  # E = log2 N - log2(prod n**n) / N
    ranks = [sorted(range(c), key=lambda k: products[r * c + k]) for r in range(b)]  # stable: ties to lower index
    return torch.stack(entropies).reshape(b, c), torch.tensor(ranks)


def top(scores: torch.Tensor, k: int) -> torch.Tensor:
    return scores.sort(dim=1, descending=True, stable=True).indices[:, :k]


@pytest.mark.parametrize("shape", [(2, 24, 20, 23), (3, 40, 9, 9), (2, 6, 6, 7, 8)])
def test_entropy_equals_straightforward_implementation(shape):
    # integer histogram + fixed-point log sums against unique counts + float64 p log p: same scores to 2**-30 bits;
    # the ranking equals the exact one. On small maps many channels tie exactly (same multiset of counts): the float
    # sums of the previous implementation ordered those by rounding noise, the fixed-point sums tie them exactly
    # and the lower channel index wins. bins=16 gives many repeated codes.
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(*shape, generator=g)
    for bins in (256, 16):
        new = entropy_score(x, bins)
        old, exact_rank = entropy_by_unique(x, bins)
        assert torch.allclose(new, old, rtol=0, atol=2**-29)
        assert torch.equal(top(new, shape[1]), exact_rank)
    # 34 x 34: 1024 windows, dense histograms, 20 channels in 3 chunks (8 channels of 256 x 256 bins at a time);
    # the dense histogram and the sort (used below 1024 windows) give the same integers
    x = torch.rand(1, 20, 34, 34, generator=g)
    codes = _pair_codes(x, 256)
    table = torch.arange(codes.shape[1] + 1) * 1000
    assert torch.equal(_log2_count_sums(codes, table, 256), _log2_count_sums_by_sort(codes, table, 256))
    new = entropy_score(x)
    old, exact_rank = entropy_by_unique(x)
    assert torch.allclose(new, old, rtol=0, atol=2**-29) and torch.equal(top(new, 20), exact_rank)


def test_curvature_is_one_depthwise_convolution():
    g = torch.Generator().manual_seed(3)
    for x in (torch.randn(2, 5, 9, 11, generator=g), torch.randn(1, 3, 5, 6, 7, generator=g)):
        weight = curvature_kernel(x.ndim - 2)[None, None]
        conv = torch.nn.functional.conv2d if x.ndim == 4 else torch.nn.functional.conv3d
        single = conv(x.double().reshape((-1, 1) + tuple(x.shape[2:])), weight)  # each channel on its own
        assert torch.allclose(mean_curvature(x.double()), single.reshape(x.shape[:2] + single.shape[2:]))
        assert torch.allclose(curvature_score(x), curvature_score(x.double()), rtol=1e-5)
        assert torch.equal(top(curvature_score(x), x.shape[1]), top(curvature_score(x.double()), x.shape[1]))
    with torch.profiler.profile() as prof:
        curvature_score(torch.randn(2, 8, 12, 12))
    convs = [e for e in prof.events() if e.name == "aten::conv2d"]
    assert len(convs) == 1  # one grouped convolution for all samples and channels


@pytest.mark.parametrize("mode", ["curvature", "entropy"])
@pytest.mark.parametrize("spatial", [(16, 19), (7, 8, 9)])
def test_selection_is_deterministic_and_equivariant(mode, spatial):
    g = torch.Generator().manual_seed(7)
    x = torch.randn((4, 12) + spatial, generator=g)
    # channel k takes 2k+1 values: distinct entropies (no ties, checked), so the selection does not depend on indices
    levels = (torch.arange(12.0) + 1).reshape((1, 12) + (1,) * len(spatial))
    x = (x.clamp(-2, 2) * levels / 4).round()
    ife = IFE(len(spatial), 12, mode, ratio=0.5)
    assert all(len(row.unique()) == 12 for row in ife.score(x))
    y = ife(x)
    assert all(torch.equal(ife(x), y) for _ in range(3))  # repeat runs
    # batch order: the permuted batch gives the permuted result
    batch = torch.tensor([2, 0, 3, 1])
    assert torch.equal(ife(x[batch]), y[batch])
    # channel permutation: the same channels are selected (as feature maps), in the same order
    channels = torch.randperm(12, generator=g)
    assert torch.equal(ife(x[:, channels])[:, 12:], y[:, 12:])
    # float64 input selects the same channels as float32 (entropy: quantised in float32, so identically)
    assert torch.equal(ife(x.double())[:, 12:], y[:, 12:].double())
    # identical channels (exact ties) go to the lower index
    tied = torch.cat([x[:, :1]] * 12, dim=1)
    assert torch.equal(top(ife.score(tied), 6), torch.arange(6).expand(4, 6))


def test_descending_order_is_a_stable_sort():
    # pairwise ranks + scatter (exportable to ONNX) against torch's stable descending sort, with many ties
    g = torch.Generator().manual_seed(5)
    for scores in (torch.randint(0, 4, (6, 19), generator=g).double(), torch.randn(3, 256, generator=g)):
        assert torch.equal(descending_order(scores), scores.sort(dim=1, descending=True, stable=True).indices)


def test_entropy_table_is_built_once_a_map_size_eager_and_scripted():
    """IFE keeps the entropy's ``L(n)`` table of each map size it scores (an attribute, not in the state_dict): a
    second forward of a size reuses the tensor, eager and scripted alike, and the scores equal the ones of a call
    that builds the table for itself."""
    torch.manual_seed(0)
    x, wide = torch.randn(2, 4, 9, 9), torch.randn(2, 4, 9, 12)  # 7 x 7 = 49 and 7 x 10 = 70 windows
    levels = torch.arange(50, dtype=torch.float64).clamp_min(1)
    selected = top(entropy_score(x), 2)[:, :, None, None].expand(-1, -1, 9, 9)
    expected = torch.cat([x, torch.gather(x, 1, selected)], dim=1)
    eager = IFE(2, 4, mode="entropy")
    assert eager.state_dict() == {} and eager.log2_tables == {}
    for ife in (eager, torch.jit.script(IFE(2, 4, mode="entropy"))):
        first = ife(x)
        table = ife.log2_tables[49]
        assert torch.equal(table, (torch.log2(levels) * 2**30).round().long())
        assert torch.equal(first, expected)
        assert torch.equal(ife(x), first) and ife.log2_tables[49].data_ptr() == table.data_ptr()
        assert torch.equal(ife.score(wide), entropy_score(wide)) and sorted(ife.log2_tables) == [49, 70]
