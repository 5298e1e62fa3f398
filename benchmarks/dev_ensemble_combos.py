"""Compare ways of combining routers on the development protocol's out-of-fold predictions (binary sets).

Input: the ``--keep FILE.npz`` of ``bench_routing_dev.py`` (inner folds of one outer training part: no outer
held-out row is in it). Prints, best first, the APGR / CPT(50%) of every member, of the equal-weight mean and
of the mean of standardised differences of every subset of members, then three fitted combiners cross-fitted
over the inner folds (fitted on four, scored on the fifth): per-model NNLS (``combine=stack``), per-model
non-negative logistic regression on the members' logits (``combine=logit``) and per-member Platt calibration
followed by a mean of logits.

Run: ``.venv/bin/python benchmarks/dev_ensemble_combos.py /tmp/oof_mmlu.npz``
"""

# ruff: noqa: B023  (the loss closures are minimised at once, inside the loop that defines them)
import itertools
import sys

import numpy as np
from scipy.optimize import minimize, nnls

from routerforge.evaluate.metrics import apgr, cpt

d = np.load(sys.argv[1])
S = d["scores"]
fold = d["fold"]
names = [k[6:] for k in d.files if k.startswith("pred__")]
P = {n: d["pred__" + n] for n in names}
# strong = column with the higher mean
si = int(np.argmax(np.nanmean(S, 0)))
wi = 1 - si


def ev(pred):
    diff = pred[:, si] - pred[:, wi]
    a = apgr(diff, S[:, si], S[:, wi])
    c = cpt(diff, S[:, si], S[:, wi], 0.5)
    per = [apgr(diff[fold == f], S[fold == f, si], S[fold == f, wi]) for f in np.unique(fold)]
    return a, c, np.std(per)


def logit(p, eps=1e-3):
    p = np.clip(p, eps, 1 - eps)
    return np.log(p / (1 - p))


def crossfit(fitpred):
    out = np.zeros_like(S, dtype=float)
    for f in np.unique(fold):
        tr, te = fold != f, fold == f
        out[te] = fitpred(tr, te)
    return out


def nnls_stack(members):
    def fp(tr, te):
        o = np.zeros((te.sum(), S.shape[1]))
        for j in range(S.shape[1]):
            F = np.stack([P[m][:, j] for m in members], 1)
            mu, yb = F[tr].mean(0), S[tr, j].mean()
            w, _ = nnls(F[tr] - mu, S[tr, j] - yb)
            o[:, j] = (F[te] - mu) @ w + yb
        return np.clip(o, 0, 1)

    return crossfit(fp)


def logit_stack(members, l2=1.0, shared=False):
    def fp(tr, te):
        o = np.zeros((te.sum(), S.shape[1]))
        feats = {j: np.stack([logit(P[m][:, j]) for m in members], 1) for j in range(S.shape[1])}
        for j in range(S.shape[1]):
            X = np.c_[feats[j], np.ones(len(S))]
            y = S[:, j]

            def loss(b):
                z = X[tr] @ b
                p = 1 / (1 + np.exp(-z))
                ll = -np.mean(y[tr] * np.log(p + 1e-12) + (1 - y[tr]) * np.log(1 - p + 1e-12))
                return ll + l2 * np.sum(b[:-1] ** 2) / tr.sum()

            b = minimize(loss, np.r_[np.full(len(members), 1 / len(members)), 0.0], method="L-BFGS-B").x
            o[:, j] = 1 / (1 + np.exp(-(X[te] @ b)))
        return o

    return crossfit(fp)


def platt_mean(members, weights=None):
    """per member & model Platt calibration (cross-fitted), then mean of calibrated logits"""

    def fp(tr, te):
        o = np.zeros((te.sum(), S.shape[1]))
        for j in range(S.shape[1]):
            zs = []
            for m in members:
                x = logit(P[m][:, j])
                y = S[:, j]

                def loss(b):
                    p = 1 / (1 + np.exp(-(b[0] * x[tr] + b[1])))
                    return -np.mean(y[tr] * np.log(p + 1e-12) + (1 - y[tr]) * np.log(1 - p + 1e-12))

                b = minimize(loss, [1.0, 0.0], method="L-BFGS-B").x
                zs.append(b[0] * x[te] + b[1])
            w = np.ones(len(members)) / len(members) if weights is None else np.asarray(weights)
            o[:, j] = 1 / (1 + np.exp(-(np.tensordot(w, np.stack(zs), 1))))
        return o

    return crossfit(fp)


def zmean(members):
    """mean of per-member standardised diffs (rank-level combination, binary only)"""
    zs = []
    for m in members:
        dd = P[m][:, si] - P[m][:, wi]
        zs.append((dd - dd.mean()) / (dd.std() + 1e-12))
    z = np.mean(zs, 0)
    out = np.zeros_like(S, dtype=float)
    out[:, si] = z
    return out


rows = []
for n in names:
    rows.append((n, *ev(P[n])))
base = [n for n in names]
for r in range(2, len(names) + 1):
    for sub in itertools.combinations(names, r):
        rows.append(("mean:" + "+".join(sub), *ev(np.mean([P[m] for m in sub], 0))))
        rows.append(("z:" + "+".join(sub), *ev(zmean(sub))))
rows.sort(key=lambda t: -t[1])
for t in rows[:40]:
    print(f"{t[0]:60s} apgr {t[1]:.4f} cpt50 {t[2]:.3f} foldsd {t[3]:.3f}")
print("--- fitted combiners (cross-fitted over inner folds) ---")
for sub in [names, [n for n in names if n != "mf"], [n for n in names if n not in ("mf", "prior0")]]:
    for lab, pred in [
        ("nnls", nnls_stack(sub)),
        ("logit", logit_stack(sub)),
        ("platt-mean", platt_mean(sub)),
    ]:
        print(f"{lab}:{'+'.join(sub):55s} apgr %.4f cpt50 %.3f foldsd %.3f" % ev(pred))
