"""From pairwise wins to scores in [0, 1]: win rate and Bradley-Terry. Pure numpy functions.

``wins[i, j]`` counts how often episode i beat episode j (a tie adds 0.5 to both sides).

>>> import numpy as np
>>> wins = np.array([[0, 2], [0, 0]], dtype=float)
>>> [round(s, 3) for s in win_rate(wins)]
[1.0, 0.0]
>>> s = bradley_terry(wins)
>>> s[0] > 0.5 > s[1]
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

RankMethod = Literal["bradley_terry", "win_rate"]


def win_matrix(n: int, outcomes: Sequence[tuple[int, int, str]]) -> np.ndarray:
    """``(n, n)`` win counts from ``(a, b, winner)`` outcomes, winner in {"A", "B", "tie"}."""
    wins = np.zeros((n, n))  # (N, N)
    for a, b, winner in outcomes:
        if winner == "A":
            wins[a, b] += 1.0
        elif winner == "B":
            wins[b, a] += 1.0
        else:
            wins[a, b] += 0.5
            wins[b, a] += 0.5
    return wins


def win_rate(wins: np.ndarray) -> list[float | None]:
    """Wins over games for each player; None for a player with no game."""
    games = wins.sum(axis=1) + wins.sum(axis=0)  # (N,)
    return [None if g == 0 else float(wins[i].sum() / g) for i, g in enumerate(games)]


def bradley_terry(wins: np.ndarray, prior: float = 0.5, iters: int = 1000, tol: float = 1e-10) -> list[float | None]:
    """Bradley-Terry strengths by minorization-maximization, turned into expected win rates.

    Args:
        wins: ``(N, N)`` win counts.
        prior: Pseudo-wins added both ways on every compared pair, so an unbeaten episode has a
            finite strength.
        iters: Maximum MM iterations.
        tol: Stop when strengths move less than this.

    Returns:
        For each player, the mean probability of beating each other rated player; None for a
        player with no comparison.
    """
    n = wins.shape[0]
    games = wins + wins.T  # (N, N)
    rated = games.sum(axis=1) > 0  # (N,)
    w = wins + prior * (games > 0)  # (N, N)
    n_ij = w + w.T  # (N, N)
    p = np.ones(n)  # (N,)
    for _ in range(iters):
        denom = (n_ij / (p[:, None] + p[None, :])).sum(axis=1)  # (N,)
        new = np.where(rated, w.sum(axis=1) / np.where(denom > 0, denom, 1.0), 1.0)
        new = new / np.exp(np.log(new[rated]).mean()) if rated.any() else new
        done = np.abs(new - p).max() < tol
        p = new
        if done:
            break
    others = [j for j in range(n) if rated[j]]
    out: list[float | None] = []
    for i in range(n):
        rivals = [j for j in others if j != i]
        out.append(float(np.mean([p[i] / (p[i] + p[j]) for j in rivals])) if rated[i] and rivals else None)
    return out


RANKERS = {"bradley_terry": bradley_terry, "win_rate": win_rate}
"""Ranking methods by name."""
