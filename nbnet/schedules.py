"""Learning-rate schedules: the rate alpha used in each epoch (1-based).

    constant    alpha_e = alpha
    step        alpha_e = alpha * gamma ** floor((e - 1) / K)          (every K epochs times gamma)
    cosine      alpha_e = alpha * (1 + cos(pi (e - 1) / E)) / 2        (smoothly from alpha towards 0)
    invscaling  alpha_e = alpha / (t + 1) ** power_t,  t = samples seen before epoch e  (scikit-learn's)
    adaptive    alpha, divided by 5 each time 2 epochs in a row fail to lower the watched cost by
                more than tol; training stops when that happens with alpha_e <= 1e-6  (scikit-learn's)

The first four are functions of the epoch; adaptive is a function of the costs watched so far
(`adaptive_rate`), so a resumed run recomputes it from its history.
"""

import math

SCHEDULES = ("constant", "step", "cosine", "invscaling", "adaptive")
ADAPTIVE_PATIENCE, ADAPTIVE_FACTOR, ADAPTIVE_FLOOR = 2, 5.0, 1e-6


def learning_rate(schedule, lr, epoch, epochs, step_epochs=10, gamma=0.1, power_t=0.5, samples_seen=0):
    if schedule in ("constant", "adaptive"):  # (adaptive: the rate before any cost is watched)
        return lr
    if schedule == "step":
        return lr * gamma ** ((epoch - 1) // step_epochs)
    if schedule == "cosine":
        return lr * (1 + math.cos(math.pi * (epoch - 1) / epochs)) / 2
    if schedule == "invscaling":
        return lr / (samples_seen + 1) ** power_t
    raise ValueError(f"unknown schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")


def adaptive_rate(lr, costs, tol):
    """(rate, stop) of the adaptive schedule after epochs whose watched costs were `costs`: the
    rate divided by ADAPTIVE_FACTOR each time ADAPTIVE_PATIENCE epochs in a row did not lower the
    best cost so far by more than tol (the count starts again after each division); stop is True
    when that happened with the rate already at or below ADAPTIVE_FLOOR."""
    best, failed = math.inf, 0
    for cost in costs:
        failed = failed + 1 if cost > best - tol else 0
        best = min(best, cost)
        if failed >= ADAPTIVE_PATIENCE:
            if lr <= ADAPTIVE_FLOOR:
                return lr, True
            lr, failed = lr / ADAPTIVE_FACTOR, 0
    return lr, False
