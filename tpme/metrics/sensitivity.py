"""How TPME's verdict depends on its weights: a grid over the weight simplex
(a1 + a2 + a3 = 1 in steps of `step`), the winner (lowest TPME) at each point, each
method's share of the simplex, how stable the ranking is against the chosen weights,
and where the winner changes.

The normalised terms t, p, m do not depend on the weights, so every grid point is one
matrix product. Ties: methods whose TPME is within TIE_TOL of the lowest share the point;
it counts 1/k towards each of the k tied methods' shares and is shown as a tie on the map.
Ranks at a point are dense ranks of TPME rounded to 12 decimals, as in `score`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tpme.errors import TpmeError
from tpme.metrics.tpme import Entry, Weights, score

TIE_TOL = 1e-9


@dataclass(frozen=True)
class Boundary:
    """Two neighbouring grid points whose winners differ, and the weights midway between them."""

    weights: tuple[float, float, float]
    before: tuple[str, ...]
    after: tuple[str, ...]


@dataclass
class Sensitivity:
    methods: list[str]
    step: float
    grid: np.ndarray  # [G, 3] weights
    tpme: np.ndarray  # [G, K]
    winners: list[tuple[str, ...]]  # per grid point, the methods sharing the lowest TPME
    shares: dict[str, float]
    chosen: Weights
    chosen_winners: tuple[str, ...]
    tau: np.ndarray  # [G] Kendall tau-b of the ranking at each point against the chosen weights
    identical_share: float
    boundaries: list[Boundary]

    @property
    def tau_mean(self) -> float:
        return float(self.tau.mean())

    @property
    def tau_min(self) -> float:
        return float(self.tau.min())

    def to_dict(self) -> dict:
        return {
            "methods": self.methods,
            "step": self.step,
            "points": len(self.grid),
            "tie_rule": f"methods within {TIE_TOL:g} of the lowest TPME share a point; it counts 1/k to each of k tied methods",
            "chosen_weights": list(self.chosen.given()),
            "chosen_winner": list(self.chosen_winners),
            "shares": self.shares,
            "kendall_tau": {"mean": self.tau_mean, "min": self.tau_min, "identical_ranking_share": self.identical_share},
            "boundaries": [{"weights": list(b.weights), "from": list(b.before), "to": list(b.after)} for b in self.boundaries],
            "boundary_summary": self.boundary_summary(),
        }

    def boundary_summary(self) -> list[dict]:
        """Boundaries grouped by the pair of winners they separate: how many grid edges cross
        it and its point nearest to the chosen weights (the smallest change that flips the winner
        that way), nearest first."""
        chosen = np.array(self.chosen.as_tuple()) / (1 - self.chosen.energy)  # on the map's simplex (a4 held fixed)
        pairs: dict[tuple, list[Boundary]] = {}
        for b in self.boundaries:
            pairs.setdefault(tuple(sorted([b.before, b.after])), []).append(b)
        out = []
        for (a, b), bs in pairs.items():
            near = min(bs, key=lambda x: float(np.abs(np.array(x.weights) - chosen).sum()))
            out.append({"between": [" = ".join(a), " = ".join(b)], "edges": len(bs), "nearest": list(near.weights), "distance_l1": round(float(np.abs(np.array(near.weights) - chosen).sum()), 6)})
        out.sort(key=lambda d: d["distance_l1"])
        return out


def simplex_grid(step: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights (i, j, k) / n with i + j + k = n, n = 1 / step; also the integer triples."""
    if not (0 < step <= 1):
        raise TpmeError(f"--step must be in (0, 1], got {step:g}", "e.g. --step 0.05")
    n = round(1 / step)
    if abs(n * step - 1) > 1e-9:
        raise TpmeError(f"--step {step:g} does not divide 1", "use a step such as 0.1, 0.05, 0.02 or 0.01")
    if n > 500:
        raise TpmeError(f"--step {step:g} is too fine ({(n + 1) * (n + 2) // 2} points)", "use a step of at least 0.002")
    idx = np.array([(i, j, n - i - j) for i in range(n + 1) for j in range(n + 1 - i)], dtype=np.int64)
    return idx / n, idx


def normalised_terms(entries: list[Entry]) -> np.ndarray:
    """[K, 3] min-max normalised t, p, m, exactly as `score` computes them."""
    scores = score(entries, Weights(1.0, 0.0, 0.0))
    return np.array([[s.t_norm, s.p_norm, s.m_norm] for s in scores], dtype=float)


def energy_offset(entries: list[Entry], chosen: Weights) -> np.ndarray:
    """[K] the fixed energy part a4·e of each method's TPME (zeros with three weights); the map
    then spreads the remaining 1 - a4 over time, parameters and memory."""
    if not chosen.energy:
        return np.zeros(len(entries))
    scores = score(entries, chosen)
    return chosen.energy * np.array([s.e_norm for s in scores], dtype=float)


def tpme_on_simplex(w: np.ndarray, terms: np.ndarray, offset: np.ndarray, energy: float) -> np.ndarray:
    """TPME [..., K] at simplex points w [..., 3] (a1 + a2 + a3 = 1), the energy weight held fixed."""
    return (1 - energy) * (w @ terms.T) + offset


def winner_regions(terms: np.ndarray, offset: np.ndarray, energy: float) -> list[tuple[list[int], np.ndarray]]:
    """Exact regions of the simplex where each method has the lowest TPME: TPME is linear in
    the weights, so each region is the triangle cut by the half-planes TPME_k <= TPME_j, a
    convex polygon. Methods with identical TPME everywhere share one region (a tie). Returns
    (method indices, polygon vertices [V, 3] as weights), regions of zero area left out."""
    coef = (1 - energy) * terms + offset[:, None]  # TPME_k(w) = w · coef_k, since a1 + a2 + a3 = 1
    groups: list[list[int]] = []
    for k in range(len(coef)):
        same = next((g for g in groups if np.allclose(coef[g[0]], coef[k], atol=TIE_TOL)), None)
        if same is None:
            groups.append([k])
        else:
            same.append(k)
    out = []
    for g in groups:
        poly = np.eye(3)
        for h in groups:
            if h is not g:
                poly = _clip(poly, coef[g[0]] - coef[h[0]])
        if len(poly) >= 3 and _area(poly) > 1e-12:
            out.append((g, poly))
    return out


def _clip(poly: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The part of a convex polygon (vertices as weights) where w · d <= 0 (Sutherland-Hodgman)."""
    out = []
    vals = poly @ d
    for i in range(len(poly)):
        a, b, va, vb = poly[i], poly[(i + 1) % len(poly)], vals[i], vals[(i + 1) % len(poly)]
        if va <= 0:
            out.append(a)
        if (va < 0 < vb) or (vb < 0 < va):
            out.append(a + (b - a) * (va / (va - vb)))
    return np.array(out).reshape(-1, 3)


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 2] + 0.5 * poly[:, 1], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def dense_ranks(values: np.ndarray) -> np.ndarray:
    """Dense ranks (1 = lowest) along the last axis of [G, K], values rounded to 12 decimals as in `score`."""
    r = np.round(values, 12)
    s = np.sort(r, axis=1)
    first = np.ones_like(s, dtype=bool)
    first[:, 1:] = s[:, 1:] != s[:, :-1]  # the first occurrence of each distinct value
    return ((s[:, None, :] <= r[:, :, None]) & first[:, None, :]).sum(axis=2)


def kendall_tau_b(ranks: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Kendall tau-b of each row of `ranks` [G, K] against `reference` [K] (ties allowed).
    Where a ranking is all ties the coefficient is undefined: it is then 1 when the two
    rankings are identical and 0 otherwise; with fewer than two methods it is 1."""
    g, k = ranks.shape
    if k < 2:
        return np.ones(g)
    iu = np.triu_indices(k, 1)
    da = np.sign(ranks[:, :, None] - ranks[:, None, :])[:, iu[0], iu[1]]
    db = np.sign(reference[:, None] - reference[None, :])[iu]
    n_a = np.count_nonzero(da, axis=1)
    n_b = np.count_nonzero(db)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = (da * db).sum(axis=1) / np.sqrt(n_a * n_b)
    undefined = (n_a == 0) | (n_b == 0)
    same = (ranks == reference).all(axis=1)
    return np.where(undefined, same.astype(float), tau)


def winners_at(tpme: np.ndarray, methods: list[str]) -> list[tuple[str, ...]]:
    low = tpme.min(axis=1, keepdims=True)
    tied = tpme <= low + TIE_TOL
    return [tuple(m for m, t in zip(methods, row) if t) for row in tied]


def sensitivity(entries: list[Entry], chosen: Weights, step: float = 0.05) -> Sensitivity:
    if len(entries) < 1:
        raise TpmeError("no completed results to analyse", "sensitivity needs at least one method with status ok")
    methods = [e.method for e in entries]
    terms = normalised_terms(entries)
    offset = energy_offset(entries, chosen)
    grid, idx = simplex_grid(step)
    tpme = tpme_on_simplex(grid, terms, offset, chosen.energy)
    winners = winners_at(tpme, methods)
    counts = dict.fromkeys(methods, 0.0)
    for w in winners:
        for m in w:
            counts[m] += 1 / len(w)
    shares = {m: c / len(winners) for m, c in counts.items()}
    chosen_t = np.array([s.tpme for s in score(entries, chosen)])
    chosen_winners = winners_at(chosen_t[None, :], methods)[0]
    ranks = dense_ranks(tpme)
    chosen_rank = dense_ranks(chosen_t[None, :])[0]
    tau = kendall_tau_b(ranks, chosen_rank)
    identical = float((ranks == chosen_rank).all(axis=1).mean())
    return Sensitivity(methods, step, grid, tpme, winners, shares, chosen, chosen_winners, tau, identical, boundaries(idx, grid, winners))


def boundaries(idx: np.ndarray, grid: np.ndarray, winners: list[tuple[str, ...]]) -> list[Boundary]:
    """Every pair of grid neighbours (one step moved from one weight to another) with different
    winners, as the midpoint weights, ordered along a1 then a2."""
    where = {tuple(t): g for g, t in enumerate(idx.tolist())}
    out = []
    for g, (i, j, k) in enumerate(idx.tolist()):
        for d in ((1, -1, 0), (1, 0, -1), (0, 1, -1)):
            h = where.get((i + d[0], j + d[1], k + d[2]))
            if h is not None and winners[g] != winners[h]:
                mid = tuple(round(float(v), 6) for v in (grid[g] + grid[h]) / 2)
                out.append(Boundary(mid, winners[g], winners[h]))
    out.sort(key=lambda b: b.weights)
    return out
