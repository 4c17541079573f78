#!/usr/bin/python3
"""Writes tests/fixtures/onnx/: small PyTorch models exported with torch.onnx.export, their inputs
and PyTorch's outputs, for tests/test_onnx_import.c (which needs neither Python nor torch: the
files are committed).

Run as `/usr/bin/python3 tools/make_onnx_fixtures.py` (Debian: apt-get install python3-torch
python3-onnx). Per case <c>:
  <c>.onnx             the float32 model, batch axis dynamic
  <c>_in<k>.npy        the k-th graph input as PyTorch takes it (NCHW images; int64 lengths)
  <c>_out.npy          PyTorch's output, computed in float64 from the same float32 weights (so the
                       test measures advnn's error, not PyTorch's float32 rounding)
Cases: dense (every activation, BatchNorm), conv (NCHW, 'same' and valid convs, pooling, PReLU,
channels-first Flatten -> Linear; the exporter folds its BatchNorm into the conv), lstm (ONNX
sequence_lens), seq (MatMul + Add, NCL Conv1d, pooling, an LSTM's sequence, opset 11), w1/w2/w3
(small versions of the three reference networks of WORKLOADS.md), and for the error tests:
unsupported_op (a Sin), opset7 and opset22 (the dense model with its opset rewritten).
"""
import io
import os

import numpy as np
import onnx
import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "onnx")
torch.manual_seed(1234)
rng = np.random.default_rng(1234)


def export(name, model, inputs, input_names, opset=13, output_name="y"):
    model.eval()
    dyn = {n: {0: "batch"} for n in input_names}
    dyn[output_name] = {0: "batch"}
    f = io.BytesIO()
    torch.onnx.export(model, tuple(inputs), f, input_names=input_names, output_names=[output_name],
                      dynamic_axes=dyn, opset_version=opset, do_constant_folding=True)
    raw = f.getvalue()
    onnx.checker.check_model(onnx.load_from_string(raw), full_check=True)
    with open(os.path.join(OUT, name + ".onnx"), "wb") as fh:
        fh.write(raw)
    with torch.no_grad():
        ref = model.double()(*[x.double() if x.is_floating_point() else x for x in inputs])
    model.float()
    for k, x in enumerate(inputs):
        np.save(os.path.join(OUT, "%s_in%d.npy" % (name, k)), x.numpy())
    np.save(os.path.join(OUT, name + "_out.npy"), ref.numpy().astype(np.float32))
    ops = sorted({n.op_type for n in onnx.load_from_string(raw).graph.node})
    print("%-14s %6d bytes  opset %d  ops %s" % (name, len(raw), opset, " ".join(ops)))
    return raw


def randomize_bn(m):
    """BatchNorm with non-trivial running statistics (eval mode uses them)."""
    for mod in m.modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = mod.num_features
            mod.running_mean.copy_(torch.tensor(rng.normal(0, 0.5, c), dtype=torch.float32))
            mod.running_var.copy_(torch.tensor(rng.uniform(0.5, 2.0, c), dtype=torch.float32))
            mod.weight.data.copy_(torch.tensor(rng.uniform(0.5, 1.5, c), dtype=torch.float32))
            mod.bias.data.copy_(torch.tensor(rng.normal(0, 0.3, c), dtype=torch.float32))


class Dense(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.bn = nn.Linear(10, 16), nn.BatchNorm1d(16)
        self.l2, self.l3, self.l4 = nn.Linear(16, 12), nn.Linear(12, 12), nn.Linear(12, 8)
        self.l5, self.pr, self.l6 = nn.Linear(8, 8), nn.PReLU(8), nn.Linear(8, 5)

    def forward(self, x):
        h = torch.relu(self.bn(self.l1(x)))
        h = nn.functional.leaky_relu(self.l2(h), 0.2)
        h = nn.functional.elu(self.l3(h), 0.7)
        h = torch.tanh(self.l4(h))
        h = self.pr(torch.sigmoid(self.l5(h)))
        return torch.softmax(self.l6(h), dim=1)


class Conv2(nn.Module):
    """NCHW: 'same' conv + BN + ReLU, max pool, valid conv + PReLU, strided conv, avg pool,
    global pooling beside a channels-first Flatten, concat, Linear."""
    def __init__(self):
        super().__init__()
        self.c1, self.bn = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.c2, self.pr = nn.Conv2d(4, 6, 3), nn.PReLU(6)
        self.c3 = nn.Conv2d(6, 5, (1, 2))
        self.fc = nn.Linear(5 * 3 * 2 + 5, 4)

    def forward(self, x):                                     # (N, 2, 10, 10)
        h = torch.relu(self.bn(self.c1(x)))                   # (N, 4, 10, 10)
        h = nn.functional.max_pool2d(h, 2)                    # (N, 4, 5, 5)
        h = self.pr(self.c2(h))                               # (N, 6, 3, 3)
        h = torch.tanh(self.c3(h))                            # (N, 5, 3, 2)
        g = nn.functional.adaptive_avg_pool2d(h, 1)           # (N, 5, 1, 1): GlobalAveragePool
        z = torch.cat([torch.flatten(h, 1), torch.flatten(g, 1)], 1)
        return self.fc(z)


class Lstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm, self.fc = nn.LSTM(3, 5, batch_first=True), nn.Linear(5, 2)

    def forward(self, x, lens):
        p = nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(p)
        return self.fc(h[-1])


class Seq(nn.Module):
    """Dense on a sequence (MatMul + Add), Conv1d on NCL with 'same' padding, MaxPool1d and
    AvgPool1d, an LSTM's whole output sequence, Flatten, LeakyReLU, Softmax at opset 11."""
    def __init__(self):
        super().__init__()
        self.l1, self.c1 = nn.Linear(4, 6), nn.Conv1d(6, 5, 3, padding=1)
        self.lstm, self.fc = nn.LSTM(5, 3, batch_first=True), nn.Linear(2 * 3, 4)

    def forward(self, x):                                     # (N, 8, 4)
        h = torch.relu(self.l1(x))                            # (N, 8, 6): MatMul + Add
        h = nn.functional.max_pool1d(self.c1(h.transpose(1, 2)), 2)   # (N, 5, 4)
        h = nn.functional.avg_pool1d(nn.functional.leaky_relu(h, 0.1), 2)  # (N, 5, 2)
        y, _ = self.lstm(h.transpose(1, 2))                   # (N, 2, 3)
        return torch.softmax(self.fc(torch.flatten(y, 1)), dim=1)


class W1(nn.Module):
    def __init__(self):
        super().__init__()
        layers, n = [], 10
        for _ in range(3):
            layers += [nn.BatchNorm1d(n), nn.Linear(n, 16), nn.ReLU()]
            n = 16
        self.body, self.out = nn.Sequential(*layers), nn.Linear(16, 1)

    def forward(self, x):
        return torch.sigmoid(self.out(self.body(x)))


class Branch(nn.Module):
    def __init__(self, f, widths, units):
        super().__init__()
        convs, c = [], f
        for w in widths:
            convs += [nn.Conv1d(c, w, 1), nn.ReLU(), nn.Dropout(0.2)]
            c = w
        self.convs, self.lstm = nn.Sequential(*convs), nn.LSTM(c, units, batch_first=True)

    def forward(self, x):                                     # (N, T, F)
        h = self.convs(x.transpose(1, 2)).transpose(1, 2)     # Conv1D over T, kernel 1
        _, (hn, _) = self.lstm(h)
        return hn[-1]


class W2(nn.Module):
    def __init__(self):
        super().__init__()
        self.cl, self.tr, self.mu = Branch(12, [16, 8], 6), Branch(10, [16, 8], 6), Branch(6, [8, 4], 3)
        self.head = nn.Sequential(nn.Linear(6 + 6 + 3 + 3, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 16),
                                  nn.ReLU(), nn.Linear(16, 3), nn.Softmax(dim=1))

    def forward(self, clusters, tracks, muons, jet):
        return self.head(torch.cat([self.cl(clusters), self.tr(tracks), self.mu(muons), jet], 1))


class W3(nn.Module):
    def __init__(self):
        super().__init__()
        self.e1, self.p1 = nn.Conv2d(1, 4, 3, padding=1), nn.PReLU(4)
        self.e2 = nn.Conv2d(4, 4, 3, padding=1)
        self.e3 = nn.Conv2d(4, 2, 3, padding=1)
        self.d1, self.p2, self.d2 = nn.Linear(2 * 6 * 6, 24), nn.PReLU(24), nn.Linear(24, 8)
        self.u1, self.u2 = nn.Linear(8, 24), nn.Linear(24, 36)
        self.c1 = nn.Conv2d(1, 3, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.c2, self.p3, self.c3 = nn.Conv2d(3, 4, 3, padding=1), nn.PReLU(4), nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):                                     # (N, 1, 12, 12)
        h = self.p1(self.e1(x))
        h = nn.functional.avg_pool2d(torch.relu(self.e2(h)), 2)   # (N, 4, 6, 6)
        h = torch.relu(self.e3(h))                            # (N, 2, 6, 6)
        z = self.d2(self.p2(self.d1(torch.flatten(h, 1))))   # bottleneck 8
        h = torch.relu(self.u2(torch.relu(self.u1(z)))).view(-1, 1, 6, 6)
        h = self.up(torch.relu(self.c1(h)))                   # (N, 3, 12, 12)
        return self.c3(self.p3(self.c2(h)))                   # (N, 1, 12, 12)


def lstm_fixture():
    """torch.onnx.export turns packed sequences into a sort (TopK, ScatterElements) rather than an
    LSTM with sequence_lens, so this graph is assembled with onnx.helper from a PyTorch LSTM's
    weights: Transpose -> LSTM(sequence_lens) -> Y_h -> Squeeze -> Gemm, the form tf2onnx and
    hand-written exporters use. The reference is PyTorch on the packed sequences."""
    from onnx import helper, TensorProto, numpy_helper
    model = Lstm().eval()
    N, T, F, H = 5, 6, 3, 5
    lens = torch.tensor([6, 3, 1, 4, 6], dtype=torch.int64)
    x = f32(N, T, F)
    for i, l in enumerate(lens):
        x[i, l:] = 0
    def reorder(w):   # torch gates i, f, g, o -> ONNX i, o, f, c
        i, f, g, o = np.split(w.detach().numpy(), 4, axis=0)
        return np.concatenate([i, o, f, g], axis=0)
    W = reorder(model.lstm.weight_ih_l0)[None]
    R = reorder(model.lstm.weight_hh_l0)[None]
    B = np.concatenate([reorder(model.lstm.bias_ih_l0), reorder(model.lstm.bias_hh_l0)])[None]
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in
             ((W, "W"), (R, "R"), (B, "B"), (model.fc.weight.detach().numpy(), "fcw"), (model.fc.bias.detach().numpy(), "fcb"))]
    inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "ax0"))
    nodes = [helper.make_node("Transpose", ["seq"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("Identity", ["lens"], ["lens32"]),
             helper.make_node("LSTM", ["xt", "W", "R", "B", "lens32"], ["", "yh"], hidden_size=H),
             helper.make_node("Squeeze", ["yh", "ax0"], ["h"]),
             helper.make_node("Gemm", ["h", "fcw", "fcb"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "lstm_seqlens",
                              [helper.make_tensor_value_info("seq", TensorProto.FLOAT, ["batch", T, F]),
                               helper.make_tensor_value_info("lens", TensorProto.INT32, ["batch"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], inits)
    mo = helper.make_model(graph, producer_name="advnn make_onnx_fixtures.py", opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(mo, full_check=True)
    raw = mo.SerializeToString()
    with open(os.path.join(OUT, "lstm.onnx"), "wb") as fh:
        fh.write(raw)
    with torch.no_grad():
        ref = model.double()(x.double(), lens)
    np.save(os.path.join(OUT, "lstm_in0.npy"), x.numpy())
    np.save(os.path.join(OUT, "lstm_in1.npy"), lens.numpy().astype(np.int32))
    np.save(os.path.join(OUT, "lstm_out.npy"), ref.numpy().astype(np.float32))
    print("%-14s %6d bytes  opset 14  ops Transpose Identity LSTM Squeeze Gemm (assembled)" % ("lstm", len(raw)))


def f32(*shape, scale=1.0):
    return torch.tensor(rng.normal(0, scale, shape), dtype=torch.float32)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    m = Dense(); randomize_bn(m)
    raw = export("dense", m, [f32(7, 10)], ["x"], opset=13)
    for ops in (7, 22):   # the same model declaring an opset advnn does not import
        mo = onnx.load_from_string(raw)
        mo.opset_import[0].version = ops
        with open(os.path.join(OUT, "opset%d.onnx" % ops), "wb") as fh:
            fh.write(mo.SerializeToString())
    m = Conv2(); randomize_bn(m)
    export("conv", m, [f32(4, 2, 10, 10)], ["img"], opset=11)
    lstm_fixture()
    export("seq", Seq(), [f32(5, 8, 4)], ["x"], opset=11)
    m = W1(); randomize_bn(m)
    export("w1", m, [f32(9, 10)], ["x"], opset=17)
    export("w2", W2(), [f32(4, 5, 12), f32(4, 4, 10), f32(4, 5, 6), f32(4, 3)], ["clusters", "tracks", "muons", "jet"], opset=13)
    m = W3()
    with torch.no_grad():   # larger weights than torch's default init, so the input reaches the output
        for p in m.parameters():
            if p.dim() > 1:
                p.mul_(2.0)
    export("w3", m, [torch.rand(3, 1, 12, 12) * 4], ["img"], opset=13)

    class Sin(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(4, 3)

        def forward(self, x):
            return torch.sin(self.l(x))
    export("unsupported_op", Sin(), [f32(2, 4)], ["x"], opset=13)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("tests/fixtures/onnx: %d files, %d bytes" % (len(os.listdir(OUT)), total))


if __name__ == "__main__":
    main()
