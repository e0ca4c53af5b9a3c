"""Learning-rate schedules: the rate alpha used in each epoch (1-based).

    constant  alpha_e = alpha
    step      alpha_e = alpha * gamma ** floor((e - 1) / K)          (every K epochs times gamma)
    cosine    alpha_e = alpha * (1 + cos(pi (e - 1) / E)) / 2        (smoothly from alpha towards 0)
"""

import math

SCHEDULES = ("constant", "step", "cosine")


def learning_rate(schedule, lr, epoch, epochs, step_epochs=10, gamma=0.1):
    if schedule == "constant":
        return lr
    if schedule == "step":
        return lr * gamma ** ((epoch - 1) // step_epochs)
    if schedule == "cosine":
        return lr * (1 + math.cos(math.pi * (epoch - 1) / epochs)) / 2
    raise ValueError(f"unknown schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
