#!/usr/bin/env python3
"""A Monte Carlo of bench compare's regression rule, old and new, over
synthetic blocks of runs (docs/statistics.md, "What detection takes").

Each trial makes two blocks of K runs, one run per time unit, back to back
(BASELINE then CURRENT), from a model of the machine, and asks:
  old: change beyond the threshold, worse, and Welch's one-sided p < alpha;
  new: the same, and still significant once the drift allowance is taken
       off the change: A = max over the sides of |later half - earlier half|
       * min(2, gap / half_gap) (adjacent blocks: gap K, half_gap K - K//2).
Prints the share of trials each rule calls a regression. A simulation, not
a measurement: scripts/aa-test.sh measures the machine itself.
Needs mpmath (Student's t quantile). Usage: scripts/aa-sim.py [TRIALS]."""
import math
import random
import sys
from functools import lru_cache

import mpmath

ALPHA, THRESHOLD_PCT = 0.01, 5.0


@lru_cache(None)
def t_quantile(p, df10):
    """Student's t quantile at df = df10 / 10 (cached on a 0.1 grid)."""
    df = df10 / 10
    upper = lambda t: mpmath.betainc(df / 2, 0.5, 0, df / (df + t * t), regularized=True) / 2
    lo, hi = 0.0, 1000.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if upper(mid) > 1 - p:
            lo = mid
        else:
            hi = mid
    return lo


def summary(x):
    k = len(x)
    m = sum(x) / k
    return m, sum((v - m) ** 2 for v in x) / (k - 1) / k, k - 1


def drift(x):
    h = len(x) // 2
    return sum(x[-h:]) / h - sum(x[:h]) / h


def decide(b, c):
    """(old, new): whether each rule calls CURRENT a regression (higher is better)."""
    k = len(b)
    mb, vb, db = summary(b)
    mc, vc, dc = summary(c)
    se = math.sqrt(vb + vc)
    df = (vb + vc) ** 2 / (vb * vb / db + vc * vc / dc)
    worse = mb - mc
    crit = t_quantile(1 - ALPHA, max(10, round(df * 10)))
    carry = min(2.0, k / (k - k // 2))
    allowance = max(abs(drift(b)), abs(drift(c))) * carry
    old = 100 * worse / mb > THRESHOLD_PCT and worse / se > crit
    return old, old and (worse - allowance) / se > crit


def iid(sd):
    return lambda n: [100 * (1 + random.gauss(0, sd)) for _ in range(n)]


def slower(frac, sd):
    """The second block's steps frac longer: throughput / (1 + frac)."""
    return lambda n: [100 * (1 + random.gauss(0, sd)) / (1 + frac if i >= n // 2 else 1) for i in range(n)]


def step(jump, sd):
    return lambda n: [100 * (1 + random.gauss(0, sd)) * (1 - jump if i >= n // 2 else 1) for i in range(n)]


def random_walk(tau, sd):
    def make(n):
        g, out = 0.0, []
        for _ in range(n):
            g += random.gauss(0, tau)
            out.append(100 * (1 + g + random.gauss(0, sd)))
        return out

    return make


def main():
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    random.seed(7)
    models = [
        ("A/A, sd 2%", iid(0.02)),
        ("A/A, random walk 2%/run + sd 1%", random_walk(0.02, 0.01)),
        ("A/A, -7% step between the blocks, sd 2%", step(0.07, 0.02)),
        ("10% longer step, sd 0.5%", slower(0.10, 0.005)),
        ("10% longer step, sd 1%", slower(0.10, 0.01)),
        ("10% longer step, sd 2%", slower(0.10, 0.02)),
        ("10% longer step, sd 3%", slower(0.10, 0.03)),
    ]
    print(f"{trials} trials each; regression verdicts in %, old rule / new rule")
    for k in (3, 6):
        for name, model in models:
            old = new = 0
            for _ in range(trials):
                runs = model(2 * k)
                o, n = decide(runs[:k], runs[k:])
                old += o
                new += n
            print(f"{k} runs a block, {name}: {100 * old / trials:.1f} / {100 * new / trials:.1f}", flush=True)


if __name__ == "__main__":
    main()
