#!/usr/bin/python3
"""Paper estimate of MPI data-parallel training (advnn_trainer_set_mpi) for W1-W3 at R ranks on a
network of bandwidth B and per-message latency alpha; prints the markdown table of bench/README.md.

Weak scaling: every rank keeps the workload's batch (W1 1024, W2 512 + 512, W3 512 rows), one chunk
per rank (needs ADVNN__CHUNKS_MAX >= R: today it is 8, so beyond 8 ranks the extra ranks idle), so a
step's compute is the 1-rank, 1-thread step t_c and the global batch is R x batch. Communication is
not overlapped with compute (the library's exchanges are blocking), so

  step(R) = t_c + U * t_grad + X * t_small
  t_grad  = 2 (R - 1) / R * 4 P / B + 2 (R - 1) alpha          (ring all-reduce model, as the library's
                                                                 exchange moves the same bytes per rank)
  t_small = R * 8 L / B + ceil(log2 R) alpha                    (allgather of one row of L doubles per
                                                                 chunk: BatchNorm sums / losses / status)

U gradient exchanges and X small exchanges per step (counted by bench/bench_mpi.c), P parameters
(floats) per gradient exchange. Usage: tools/mpi_scaling.py [--json build/bench/bench_mpi_w2.jsonl]
(--json: also prints the measured 2-rank shared-memory figures beside the model's for R = 2).
"""
import json
import math
import sys

# P: n_params (bench_mpi "params"); U, X: exchanges per step (bench_mpi, 2 ranks; W3 counted by hand:
# 3 adversary updates with one BatchNorm on batch statistics = 3 x 3, + 1); L: doubles per exchange
# row (2 + max(2 x widest BatchNorm, graph nodes)); t_c: 1-thread step on a quiet machine (README
# speed table, make compare, 2026-12-02); batch: rows per rank and step.
WORKLOADS = {
    "W1": dict(P=13776, U=2, X=10, L=130, t_c=2.04e-3, batch=1024),
    "W2": dict(P=60992, U=3, X=25, L=87, t_c=72.8e-3, batch=512),
    "W3": dict(P=892848, U=4, X=10, L=44, t_c=522e-3, batch=512),
}
NETWORKS = {"10 Gb/s (TCP, alpha 20 us)": (10e9 / 8, 20e-6), "100 Gb/s (RDMA, alpha 2 us)": (100e9 / 8, 2e-6)}
RANKS = (8, 64, 512)


def step(w, R, B, alpha):
    t_grad = 2 * (R - 1) / R * 4 * w["P"] / B + 2 * (R - 1) * alpha
    t_small = R * 8 * w["L"] / B + math.ceil(math.log2(R)) * alpha
    return w["t_c"] + w["U"] * t_grad + w["X"] * t_small, w["U"] * t_grad, w["X"] * t_small


def main():
    print("| workload | network | R | step ms (compute + gradients + small) | efficiency | rows/s (x 1 rank) |")
    print("|---|---|---|---|---|---|")
    for name, w in WORKLOADS.items():
        for net, (B, alpha) in NETWORKS.items():
            for R in RANKS:
                t, g, s = step(w, R, B, alpha)
                print("| %s | %s | %d | %.1f (%.1f + %.2f + %.2f) | %.0f%% | %.3g (x%.0f) |" % (
                    name, net, R, 1e3 * t, 1e3 * w["t_c"], 1e3 * g, 1e3 * s, 100 * w["t_c"] / t,
                    R * w["batch"] / t, R * w["t_c"] / t))
    if len(sys.argv) > 2 and sys.argv[1] == "--json":
        rows = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
        for r in rows:
            if r["ranks"] == 2:
                print("measured 2 ranks (shared memory): gradient exchange %.0f us, MPI_Allreduce %.0f us, P = %d" % (
                    r["grad_exchange_us"], r["allreduce_us"], r["params"]))


if __name__ == "__main__":
    main()
