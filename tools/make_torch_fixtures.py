#!/usr/bin/python3
"""Writes tests/fixtures/*.npy: PyTorch reference forward/backward passes for tests/test_torch.c.

Run from anywhere as `/usr/bin/python3 tools/make_torch_fixtures.py` (needs torch and numpy; the
C test does not: the fixtures are committed).

For every case: inputs and weights are drawn with a fixed seed as float32 (in advnn's layouts),
cast to float64, and the layer is run with torch's own ops (F.linear-style matmul, F.conv1d,
F.conv2d with explicit F.pad for TF 'same' padding, F.max_pool2d, F.avg_pool2d, F.interpolate,
F.prelu, F.batch_norm, torch's LSTM kernel) after converting the weights to torch's layouts
inside the autograd graph. The loss is F.mse_loss(y, t) (mean over all elements), which is what
advnn_loss_mse with unit weights computes. Gradients therefore come back in advnn's layout.

Files per case <c> (all float32, C order):
  <c>_x.npy, <c>_t.npy [, <c>_j.npy]   inputs (x; target t; extra input j for the W2 composite)
  <c>_y.npy                            forward output
  <c>_dx.npy [, <c>_dj.npy]            d loss / d input
  <c>_p<k>.npy, <c>_g<k>.npy           parameter block k in advnn's block order and its gradient
                                       (no g file for BatchNorm running statistics)
"""
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


# ---------------------------------------------------------------- layers in advnn's layouts
def act(z, a):
    if a == "linear":
        return z
    return {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
            "elu": F.elu, "softplus": F.softplus}[a](z)


def dense(x, W, b, a="linear"):
    """W (in, out) = torch Linear.weight.T; b (1, out); on the last axis."""
    return act(F.linear(x, W.t(), b.reshape(-1)), a)


def same_pad(n, k, s):
    """TF 'same': out = ceil(n/s), total = max((out-1)*s + k - n, 0), before = total//2."""
    out = -(-n // s)
    tot = max((out - 1) * s + k - n, 0)
    return tot // 2, tot - tot // 2


def conv1d(x, K, b, k, s, pad, a="linear"):
    """x (N, T, C); K (k*C, Cout) = (1, k, C, Cout) flattened."""
    C = x.shape[2]
    w = K.reshape(k, C, -1).permute(2, 1, 0)          # (Cout, Cin, k)
    xt = x.permute(0, 2, 1)                          # (N, C, T)
    if pad == "same":
        xt = F.pad(xt, same_pad(x.shape[1], k, s))
    y = F.conv1d(xt, w, b.reshape(-1), stride=s)
    return act(y.permute(0, 2, 1), a)


def conv2d(x, K, b, kh, kw, sh, sw, pad, a="linear"):
    """x (N, H, W, C); K (kh*kw*C, Cout) = (kh, kw, C, Cout) flattened."""
    C = x.shape[3]
    w = K.reshape(kh, kw, C, -1).permute(3, 2, 0, 1)  # (Cout, Cin, kh, kw)
    xt = x.permute(0, 3, 1, 2)                        # NCHW
    if pad == "same":
        pt, pb = same_pad(x.shape[1], kh, sh)
        pl, pr = same_pad(x.shape[2], kw, sw)
        xt = F.pad(xt, (pl, pr, pt, pb))
    y = F.conv2d(xt, w, b.reshape(-1), stride=(sh, sw))
    return act(y.permute(0, 2, 3, 1), a)


def nchw(f):
    return lambda x, *args, **kw: f(x.permute(0, 3, 1, 2), *args, **kw).permute(0, 2, 3, 1)


maxpool2d = nchw(F.max_pool2d)
avgpool2d = nchw(F.avg_pool2d)
upsample2 = nchw(lambda x: F.interpolate(x, scale_factor=2, mode="nearest"))


def prelu(x, alpha):
    """one slope per channel (last axis); alpha (1, C)."""
    perm = [0, x.dim() - 1] + list(range(1, x.dim() - 1))
    inv = [0] + list(range(2, x.dim())) + [1]
    return F.prelu(x.permute(*perm), alpha.reshape(-1)).permute(*inv)


def lstm(x, W, U, b, return_sequences):
    """Keras gate order i, f, c, o = torch's i, f, g, o. W (F, 4H) = weight_ih.T, U (H, 4H) =
    weight_hh.T, b = bias_ih (+ bias_hh = 0). torch's own LSTM kernel (what nn.LSTM calls)."""
    H = U.shape[0]
    h0 = torch.zeros(1, x.shape[0], H)
    c0 = torch.zeros(1, x.shape[0], H)
    params = [W.t(), U.t(), b.reshape(-1), torch.zeros(4 * H)]
    out, hT, _ = torch._VF.lstm(x, (h0, c0), params, True, 1, 0.0, True, False, True)
    return out if return_sequences else hT[0]


def batchnorm(x, gamma, beta, mean, var, eps):
    """train mode (batch statistics, biased variance) on the last axis of (N, F)."""
    return F.batch_norm(x, mean.reshape(-1).clone(), var.reshape(-1).clone(), gamma.reshape(-1),
                        beta.reshape(-1), training=True, momentum=0.1, eps=eps)


# ---------------------------------------------------------------- cases
def run_case(name, seed, inputs, tshape, blocks, fwd):
    """inputs: list of (suffix, shape); blocks: list of (shape, trainable, init) with init
    'u' (uniform +-1/sqrt(rows)), 'a' (PReLU slopes), 'g' (gamma), 'b' (small bias), 'zero', 'one';
    fwd(ins, ps) -> y."""
    rng = np.random.default_rng(seed)
    ins32 = [rng.uniform(-1.5, 1.5, size=s).astype(np.float32) for _, s in inputs]
    ps32 = []
    for shape, _, init in blocks:
        if init == "u":
            lim = 1.0 / math.sqrt(shape[0]) if shape[0] > 1 else 0.5
            v = rng.uniform(-1.5 * lim, 1.5 * lim, size=shape)
        elif init == "b":
            v = rng.uniform(-0.3, 0.3, size=shape)
        elif init == "a":
            v = rng.uniform(0.05, 0.5, size=shape)
        elif init == "g":
            v = rng.uniform(0.5, 1.5, size=shape)
        elif init == "zero":
            v = np.zeros(shape)
        elif init == "one":
            v = np.ones(shape)
        ps32.append(v.astype(np.float32))
    ins = [torch.tensor(a.astype(np.float64), requires_grad=True) for a in ins32]
    ps = [torch.tensor(p.astype(np.float64), requires_grad=tr) for p, (_, tr, _) in zip(ps32, blocks)]
    y = fwd(ins, ps)
    t32 = rng.uniform(-1, 1, size=tuple(y.shape)).astype(np.float32)
    assert tuple(y.shape) == tuple(tshape), (name, y.shape, tshape)
    loss = F.mse_loss(y, torch.tensor(t32.astype(np.float64)))
    loss.backward()

    def save(suffix, a):
        np.save(os.path.join(OUT, "%s_%s.npy" % (name, suffix)), np.ascontiguousarray(a, dtype=np.float32))

    for (suffix, _), a, v in zip(inputs, ins32, ins):
        save(suffix, a)
        save("d" + suffix, v.grad.numpy())
    save("t", t32)
    save("y", y.detach().numpy())
    for k, (p, v) in enumerate(zip(ps32, ps)):
        save("p%d" % k, p)
        if blocks[k][1]:
            save("g%d" % k, v.grad.numpy())
    print("%-16s loss %.6f, y %s, %d parameter blocks" % (name, loss.item(), tuple(y.shape), len(blocks)))


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".npy"):
            os.remove(os.path.join(OUT, f))
    def inp(*shape):
        return [("x", shape)]

    D = lambda i, o: [((i, o), True, "u"), ((1, o), True, "b")]          # noqa: E731
    BN = lambda c: [((1, c), True, "g"), ((1, c), True, "b"), ((1, c), False, "zero"), ((1, c), False, "one")]  # noqa: E731
    LS = lambda f, h: [((f, 4 * h), True, "u"), ((h, 4 * h), True, "u"), ((1, 4 * h), True, "b")]  # noqa: E731

    run_case("dense_tanh", 1, inp(4, 5), (4, 3), D(5, 3), lambda i, p: dense(i[0], p[0], p[1], "tanh"))
    run_case("dense_elu", 2, inp(4, 5), (4, 4), D(5, 4), lambda i, p: dense(i[0], p[0], p[1], "elu"))
    run_case("dense_sigmoid", 3, inp(4, 5), (4, 3), D(5, 3), lambda i, p: dense(i[0], p[0], p[1], "sigmoid"))
    run_case("conv1d_k1_relu", 4, inp(3, 6, 4), (3, 6, 5), D(4, 5),
             lambda i, p: conv1d(i[0], p[0], p[1], 1, 1, "valid", "relu"))
    run_case("conv1d_k3_same", 5, inp(3, 7, 3), (3, 7, 4), D(9, 4),
             lambda i, p: conv1d(i[0], p[0], p[1], 3, 1, "same", "linear"))
    run_case("conv1d_k2_s2_same", 6, inp(3, 7, 3), (3, 4, 4), D(6, 4),
             lambda i, p: conv1d(i[0], p[0], p[1], 2, 2, "same", "softplus"))
    run_case("conv2d_3x3_same_prelu", 7, inp(3, 5, 6, 2), (3, 5, 6, 3), D(18, 3) + [((1, 3), True, "a")],
             lambda i, p: prelu(conv2d(i[0], p[0], p[1], 3, 3, 1, 1, "same"), p[2]))
    run_case("conv2d_2x2_valid_s2", 8, inp(3, 6, 5, 2), (3, 3, 2, 3), D(8, 3),
             lambda i, p: conv2d(i[0], p[0], p[1], 2, 2, 2, 2, "valid", "tanh"))
    run_case("maxpool2d", 9, inp(3, 4, 6, 2), (3, 2, 3, 2), [], lambda i, p: maxpool2d(i[0], 2))
    run_case("avgpool2d", 10, inp(3, 4, 6, 2), (3, 2, 3, 2), [], lambda i, p: avgpool2d(i[0], 2))
    run_case("upsample_conv", 11, inp(3, 3, 3, 2), (3, 6, 6, 2), D(18, 2),
             lambda i, p: conv2d(upsample2(i[0]), p[0], p[1], 3, 3, 1, 1, "same", "sigmoid"))
    run_case("lstm_last", 12, inp(3, 5, 3), (3, 4), LS(3, 4), lambda i, p: lstm(i[0], p[0], p[1], p[2], False))
    run_case("lstm_seq", 13, inp(3, 5, 3), (3, 5, 4), LS(3, 4), lambda i, p: lstm(i[0], p[0], p[1], p[2], True))
    run_case("batchnorm", 14, inp(4, 5), (4, 5), BN(5),
             lambda i, p: batchnorm(i[0], p[0], p[1], p[2], p[3], 1e-3))

    # W1-like: batchnorm -> dense 8 relu -> dense 1
    run_case("w1", 15, inp(4, 6), (4, 1), BN(6) + D(6, 8) + D(8, 1),
             lambda i, p: dense(dense(batchnorm(i[0], p[0], p[1], p[2], p[3], 1e-3), p[4], p[5], "relu"), p[6], p[7]))

    # W2-like: conv1d k=1 8 relu -> lstm 4 -> concat with jet vector j (3) -> dense 3
    def w2(i, p):
        h = conv1d(i[0], p[0], p[1], 1, 1, "valid", "relu")
        h = lstm(h, p[2], p[3], p[4], False)
        return dense(torch.cat([h, i[1]], dim=1), p[5], p[6])
    run_case("w2", 16, [("x", (3, 5, 4)), ("j", (3, 3))], (3, 3), D(4, 8) + LS(8, 4) + D(7, 3), w2)

    # W3-like: conv2d 3x3 same 2 + prelu -> avgpool 2 -> flatten -> dense 6 -> dense 16 ->
    # reshape (4,4,1) -> upsample 2 -> conv2d 3x3 same 1 linear
    def w3(i, p):
        h = prelu(conv2d(i[0], p[0], p[1], 3, 3, 1, 1, "same"), p[2])
        h = avgpool2d(h, 2)
        h = h.reshape(h.shape[0], -1)
        h = dense(h, p[3], p[4], "relu")
        h = dense(h, p[5], p[6])
        h = upsample2(h.reshape(-1, 4, 4, 1))
        return conv2d(h, p[7], p[8], 3, 3, 1, 1, "same")
    run_case("w3", 17, inp(3, 8, 8, 1), (3, 8, 8, 1),
             D(9, 2) + [((1, 2), True, "a")] + D(32, 6) + D(6, 16) + D(9, 1), w3)


if __name__ == "__main__":
    main()
