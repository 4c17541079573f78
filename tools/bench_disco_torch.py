#!/usr/bin/python3
"""The reference DisCo formulation (gkasieczka/DisCo, Disco.py: N x N distance matrices, double
centring with weighted means) in PyTorch, forward + backward (d value / d score), one thread, fp32,
to set beside bench/bench_disco.c. Same data recipe as the C bench (a mass, a score depending on it,
half the rows signal: the reference is given the background rows only, as its callers do).

Usage: /usr/bin/python3 tools/bench_disco_torch.py [N ...]   (default 1024 2048 4096 8192)
Needs Debian's python3-torch. Memory grows as N^2: about 10 fp32 matrices of the background rows
(N/2 x N/2: 0.7 GB at N = 8192, 11 GB at N = 32768). Wall and CPU (process) time; on a shared machine
the CPU time is the steadier figure.
"""
import sys
import time

import torch


def disco(m, s, w):
    n = len(m)
    nw = w / w.sum() * n
    a = (m.view(-1, 1) - m.view(1, -1)).abs()
    b = (s.view(-1, 1) - s.view(1, -1)).abs()
    aav = torch.mean(a * nw, dim=1)
    A = a - aav.view(1, -1) - aav.view(-1, 1) + torch.mean(aav * nw)
    bav = torch.mean(b * nw, dim=1)
    B = b - bav.view(1, -1) - bav.view(-1, 1) + torch.mean(bav * nw)
    ab = torch.mean(torch.mean(A * B * nw, dim=1) * nw)
    aa = torch.mean(torch.mean(A * A * nw, dim=1) * nw)
    bb = torch.mean(torch.mean(B * B * nw, dim=1) * nw)
    return ab / torch.sqrt(aa * bb)


def data(n):
    g = torch.Generator().manual_seed(12345)
    u1 = torch.rand(n, generator=g)
    u2 = torch.rand(n, generator=g)
    m = 50 + 250 * u1
    s = 0.3 * u1 + 0.7 * u2
    w = 0.5 + u2
    keep = torch.arange(n) % 2 == 0          # background rows only (the C bench gives signal weight 0)
    return m[keep].contiguous(), s[keep].contiguous(), w[keep].contiguous()


def main():
    torch.set_num_threads(1)
    sizes = [int(a) for a in sys.argv[1:]] or [1024, 2048, 4096, 8192]
    print(f"DisCo reference (N x N) in PyTorch {torch.__version__}, fp32, one thread (shared machine: noisy)")
    print(f"{'N':>10} {'rows_used':>10} {'median_ms':>12} {'min_ms':>12} {'cpu_med_ms':>12} {'reps':>6} {'dCorr^2':>14}")
    for n in sizes:
        m, s0, w = data(n)
        times, cpus = [], []
        t0 = time.perf_counter()
        v = float("nan")
        while len(times) < 3 or (time.perf_counter() - t0 < 1.0 and len(times) < 50):
            s = s0.clone().requires_grad_(True)
            a, ac = time.perf_counter(), time.process_time()
            val = disco(m, s, w)
            val.backward()
            times.append(time.perf_counter() - a)
            cpus.append(time.process_time() - ac)
            v = float(val)
        times.sort()
        cpus.sort()
        print(f"{n:>10} {len(m):>10} {1e3 * times[len(times) // 2]:>12.3f} {1e3 * times[0]:>12.3f} "
              f"{1e3 * cpus[len(cpus) // 2]:>12.3f} {len(times):>6} {v:>14.6g}")


if __name__ == "__main__":
    main()
