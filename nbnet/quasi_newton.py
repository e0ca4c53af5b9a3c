"""L-BFGS in compiled code, for the full-batch fits of narrow networks (nbnet.lbfgs).

On a small data set one evaluation of J and dJ/dtheta takes tens of microseconds, and SciPy's
L-BFGS-B spends about a hundred more in Python around each one (its driver loop, its
ScalarFunction wrapper, the copies): on scikit-learn's diabetes data two thirds of a fit. Here
the same algorithm runs as one compiled loop that calls nbnet.narrow's objective itself.

It is L-BFGS-B (Byrd, Lu, Nocedal and Zhu; SciPy's code, version 3.0) as it runs without
bounds, step for step:

    d = -g at the start and after a restart,  d = -H g  otherwise
        (H: the inverse-Hessian approximation of the last M pairs s = x_new - x, y = g_new - g,
        scaled by s.y / y.y of the newest pair; computed by the two-loop recursion, which
        gives L-BFGS-B's direction in exact arithmetic)
    a step along d by More and Thuente's line search (MINPACK-2's dcsrch), with L-BFGS-B's
        constants: sufficient decrease 1e-3, curvature 0.9, interval 0.1, at most 20
        evaluations; first step 1/|d| in the first iteration, 1 afterwards
    a pair kept only when s.y > eps * (-g.s) (the curvature stays positive)
    a failed line search restores the point and restarts from d = -g (or ends the fit if
        it just did: "abnormal termination")
    stop after an iteration when: it was the max_iter-th, or more than max_fun evaluations
        were made (checked in that order, first, as SciPy's driver does), or max_i |g_i| <=
        gtol, or (J_old - J) <= ftol * max(|J_old|, |J|, 1).

The state lives in arrays (State), so a fit can run its iterations in one call or one at a
time (to call a callback or print a line after each) and get the same bits either way.
"""

import numpy as np

from .config import FASTMATH, mark_driver, renamed, serial
from . import narrow

MEMORY = 10  # pairs (s, y) kept: L-BFGS-B's m, scikit-learn's and SciPy's default
SUFFICIENT_DECREASE, CURVATURE, INTERVAL = 1e-3, 0.9, 0.1  # L-BFGS-B's line search constants
MAX_STEP, LINE_SEARCH_EVALUATIONS = 1e10, 20
RELATIVE_REDUCTION = 2.2204460492503131e-09  # ftol: SciPy's default (factr 1e7 times eps), which scikit-learn keeps
EPSILON = np.finfo(np.float64).eps

# counters[STATUS]: why the fit stopped (RUNNING while it has not)
RUNNING, GRADIENT_SMALL, REDUCTION_SMALL, ITERATIONS, EVALUATIONS, LINE_SEARCH_FAILED = range(6)
MESSAGES = {GRADIENT_SMALL: "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL",
            REDUCTION_SMALL: "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH",
            ITERATIONS: "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT",
            EVALUATIONS: "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT",
            LINE_SEARCH_FAILED: "ABNORMAL: the line search found no step that lowers J"}
# counters: [iterations done, evaluations made, pairs kept, oldest pair's slot, status]
ITERATION, EVALUATION, PAIRS, OLDEST, STATUS = range(5)


class State:
    """Everything a fit carries from one iteration to the next, for a vector of n parameters."""

    def __init__(self, x0):
        n = x0.shape[0]
        self.x = np.array(x0, dtype=np.float64)
        self.g, self.d, self.x_old, self.g_old = (np.zeros(n) for _ in range(4))
        self.S, self.Y = np.zeros((MEMORY, n)), np.zeros((MEMORY, n))
        self.rho, self.alpha = np.zeros(MEMORY), np.zeros(MEMORY)
        self.values = np.zeros(1)  # [J at x]
        self.counters = np.zeros(5, np.int64)

    def arrays(self):
        return (self.x, self.g, self.d, self.x_old, self.g_old, self.S, self.Y, self.rho, self.alpha, self.values,
                self.counters)


def lanes(fn):
    """A vector helper, its sums in SIMD lanes (every fast-math flag: see narrow.lanes)."""
    return serial(fn, fastmath=FASTMATH)


@lanes
def dot(u, v):
    """u . v"""
    total = 0.0
    for i in range(u.shape[0]):
        total += u[i] * v[i]
    return total


@lanes
def largest_magnitude(g):
    """max_i |g_i|, L-BFGS-B's norm of the projected gradient (no bounds: the gradient's)."""
    largest = 0.0
    for i in range(g.shape[0]):
        largest = max(largest, abs(g[i]))
    return largest


@lanes
def step_to(x_old, stp, d, x):
    """x = x_old + stp d"""
    for i in range(x.shape[0]):
        x[i] = x_old[i] + stp * d[i]


@lanes
def add_scaled(v, c, u):
    """v += c u"""
    for i in range(v.shape[0]):
        v[i] += c * u[i]


@serial
def direction(g, S, Y, rho, alpha, pairs, oldest, d):
    """d = -H g by the two-loop recursion over the kept pairs (newest first, then oldest first),
    H's start scaled by s.y / y.y of the newest pair; d = -g when no pair is kept."""
    for i in range(d.shape[0]):
        d[i] = -g[i]
    if pairs == 0:
        return
    for p in range(pairs - 1, -1, -1):  # q = g - sum alpha_i y_i
        i = (oldest + p) % MEMORY
        alpha[i] = rho[i] * dot(S[i], d)
        add_scaled(d, -alpha[i], Y[i])
    newest = (oldest + pairs - 1) % MEMORY
    scale = 1.0 / (rho[newest] * dot(Y[newest], Y[newest]))
    for i in range(d.shape[0]):
        d[i] *= scale
    for p in range(pairs):  # r += (alpha_i - beta_i) s_i
        i = (oldest + p) % MEMORY
        beta = rho[i] * dot(Y[i], d)
        add_scaled(d, alpha[i] - beta, S[i])


@serial
def safeguarded_step(stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stpmin, stpmax):
    """MINPACK-2's dcstep: the next trial step of More and Thuente's line search, from the best
    step so far (stx, its J fx and slope dx), the other end of the interval (sty, fy, dy) and
    the last trial (stp, fp, dp), by cubic and quadratic interpolation, kept inside the interval
    once it brackets a minimum. Returns the new (stx, fx, dx, sty, fy, dy, stp, brackt)."""
    sgnd = np.sign(dp) * np.sign(dx)
    if fp > fx:  # a higher J: the minimum is bracketed; the cubic step, or halfway to the quadratic one
        theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * np.sqrt((theta / s) ** 2 - (dx / s) * (dp / s))
        if stp < stx:
            gamma = -gamma
        r = ((gamma - dx) + theta) / (((gamma - dx) + gamma) + dp)
        stpc = stx + r * (stp - stx)
        stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx)
        stpf = stpc if abs(stpc - stx) <= abs(stpq - stx) else stpc + (stpq - stpc) / 2.0
        brackt = True
    elif sgnd < 0.0:  # the slopes change sign: bracketed; the cubic or the secant step, the farther
        theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * np.sqrt((theta / s) ** 2 - (dx / s) * (dp / s))
        if stp > stx:
            gamma = -gamma
        r = ((gamma - dp) + theta) / (((gamma - dp) + gamma) + dx)
        stpc = stp + r * (stx - stp)
        stpq = stp + (dp / (dp - dx)) * (stx - stp)
        stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
        brackt = True
    elif abs(dp) < abs(dx):  # same sign, the slope shrinks: the cubic step if it heads the right way
        theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * np.sqrt(max(0.0, (theta / s) ** 2 - (dx / s) * (dp / s)))
        if stp > stx:
            gamma = -gamma
        r = ((gamma - dp) + theta) / ((gamma + (dx - dp)) + gamma)
        if r < 0.0 and gamma != 0.0:
            stpc = stp + r * (stx - stp)
        elif stp > stx:
            stpc = stpmax
        else:
            stpc = stpmin
        stpq = stp + (dp / (dp - dx)) * (stx - stp)
        if brackt:
            stpf = stpc if abs(stpc - stp) < abs(stpq - stp) else stpq
            if stp > stx:
                stpf = min(stp + 0.66 * (sty - stp), stpf)
            else:
                stpf = max(stp + 0.66 * (sty - stp), stpf)
        else:
            stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
            stpf = min(max(stpf, stpmin), stpmax)
    else:  # same sign, the slope does not shrink: the cubic step to sty, or as far as allowed
        if brackt:
            theta = 3.0 * (fp - fy) / (sty - stp) + dy + dp
            s = max(abs(theta), abs(dy), abs(dp))
            gamma = s * np.sqrt((theta / s) ** 2 - (dy / s) * (dp / s))
            if stp > sty:
                gamma = -gamma
            r = ((gamma - dp) + theta) / (((gamma - dp) + gamma) + dy)
            stpf = stp + r * (sty - stp)
        elif stp > stx:
            stpf = stpmax
        else:
            stpf = stpmin
    if fp > fx:
        sty, fy, dy = stp, fp, dp
    else:
        if sgnd < 0.0:
            sty, fy, dy = stx, fx, dx
        stx, fx, dx = stp, fp, dp
    return stx, fx, dx, sty, fy, dy, stpf, brackt


def line_search(x, g, d, x_old, f0, g0, stp, counters, problem):
    """More and Thuente's line search (MINPACK-2's dcsrch) along d from x_old, where J = f0 and
    dJ/dstp = g0 < 0, first trying stp: x = x_old + stp d and g = dJ/dx there, for a step with
    J <= f0 + 1e-3 stp g0 (sufficient decrease) and |dJ/dstp| <= 0.9 |g0| (curvature). Returns
    (found, J, dJ/dstp, stp) of the last step tried. dcsrch's warnings (the interval too small
    to tell steps apart, the step at a bound) also end the search with that step, which
    L-BFGS-B takes; found is False when LINE_SEARCH_EVALUATIONS evaluations ended neither way."""
    gtest = SUFFICIENT_DECREASE * g0
    brackt, stage = np.bool_(False), 1  # (np.bool_: a literal False would compile safeguarded_step for it too)
    width, width1 = MAX_STEP, MAX_STEP / 0.5
    stx, fx, gx, sty, fy, gy = 0.0, f0, g0, 0.0, f0, g0
    stmin, stmax = 0.0, stp + 4.0 * stp
    for _ in range(LINE_SEARCH_EVALUATIONS):
        step_to(x_old, stp, d, x)
        f = objective(x, *problem, g)
        counters[EVALUATION] += 1
        gp = dot(g, d)
        ftest = f0 + stp * gtest
        if stage == 1 and f <= ftest and gp >= 0.0:
            stage = 2
        if f <= ftest and abs(gp) <= CURVATURE * -g0:
            return True, f, gp, stp  # both conditions
        if ((brackt and (stp <= stmin or stp >= stmax)) or (brackt and stmax - stmin <= INTERVAL * stmax)
                or (stp == MAX_STEP and f <= ftest and gp <= gtest) or (stp == 0.0 and (f > ftest or gp >= gtest))):
            return True, f, gp, stp  # dcsrch's warnings: no better step can be told apart; L-BFGS-B takes it
        if stage == 1 and f <= fx and f > ftest:  # the modified function psi = J - gtest stp, until it rises
            stx, fxm, gxm, sty, fym, gym, stp, brackt = safeguarded_step(
                stx, fx - stx * gtest, gx - gtest, sty, fy - sty * gtest, gy - gtest, stp, f - stp * gtest,
                gp - gtest, brackt, stmin, stmax)
            fx, fy, gx, gy = fxm + stx * gtest, fym + sty * gtest, gxm + gtest, gym + gtest
        else:
            stx, fx, gx, sty, fy, gy, stp, brackt = safeguarded_step(stx, fx, gx, sty, fy, gy, stp, f, gp, brackt,
                                                                    stmin, stmax)
        if brackt:  # bisect when the interval did not shrink enough in two steps
            if abs(sty - stx) >= 0.66 * width1:
                stp = stx + 0.5 * (sty - stx)
            width1, width = width, abs(sty - stx)
            stmin, stmax = min(stx, sty), max(stx, sty)
        else:
            stmin, stmax = stp + 1.1 * (stp - stx), stp + 4.0 * (stp - stx)
        stp = min(max(stp, 0.0), MAX_STEP)
        if brackt and (stp <= stmin or stp >= stmax or stmax - stmin <= INTERVAL * stmax):
            stp = stx
    return False, 0.0, 0.0, stp


def iterate(x, g, d, x_old, g_old, S, Y, rho, alpha, values, counters, max_iter, max_fun, gtol, ftol, iterations,
            problem):
    """Up to `iterations` L-BFGS iterations (module docstring) from the state in the arrays (State),
    J and dJ/dx given by objective(x, *problem, gradient_out); it stops earlier when the fit
    ends (counters[STATUS] says why). The first call evaluates the starting point."""
    if counters[EVALUATION] == 0:
        values[0] = objective(x, *problem, g)
        counters[EVALUATION] = 1
        if largest_magnitude(g) <= gtol:
            counters[STATUS] = GRADIENT_SMALL
    done = 0
    while done < iterations and counters[STATUS] == RUNNING:
        f_old, pairs, oldest = values[0], counters[PAIRS], counters[OLDEST]
        direction(g, S, Y, rho, alpha, pairs, oldest, d)
        g0 = dot(g, d)
        for i in range(x.shape[0]):
            x_old[i], g_old[i] = x[i], g[i]
        found, f, gp, stp = False, 0.0, 0.0, 1.0
        if g0 < 0.0:
            if counters[ITERATION] == 0:
                stp = min(1.0 / np.sqrt(dot(d, d)), MAX_STEP)
            found, f, gp, stp = line_search(x, g, d, x_old, f_old, g0, stp, counters, problem)
        if not found:  # back to the last point; restart from d = -g, or stop if that is what failed
            for i in range(x.shape[0]):
                x[i], g[i] = x_old[i], g_old[i]
            if pairs == 0:
                counters[STATUS] = LINE_SEARCH_FAILED
            counters[PAIRS], counters[OLDEST] = 0, 0
            continue
        values[0] = f
        counters[ITERATION] += 1
        done += 1
        if counters[ITERATION] >= max_iter:
            counters[STATUS] = ITERATIONS
        elif counters[EVALUATION] > max_fun:
            counters[STATUS] = EVALUATIONS
        elif largest_magnitude(g) <= gtol:
            counters[STATUS] = GRADIENT_SMALL
        elif f_old - f <= ftol * max(abs(f_old), abs(f), 1.0):
            counters[STATUS] = REDUCTION_SMALL
        else:
            remember(d, stp, g, g_old, stp * (gp - g0), -stp * g0, S, Y, rho, counters)


@serial
def remember(d, stp, g, g_old, sy, slope, S, Y, rho, counters):
    """Keep the pair s = stp d, y = g - g_old (s.y given, as L-BFGS-B computes it, from the line
    search's slopes) unless s.y <= eps * slope; the oldest pair makes room when MEMORY are kept."""
    if sy <= EPSILON * slope:
        return
    pairs, oldest = counters[PAIRS], counters[OLDEST]
    slot = (oldest + pairs) % MEMORY
    if pairs < MEMORY:
        counters[PAIRS] = pairs + 1
    else:
        counters[OLDEST] = (oldest + 1) % MEMORY
    for i in range(d.shape[0]):
        S[slot, i] = stp * d[i]
        Y[slot, i] = g[i] - g_old[i]
    rho[slot] = 1.0 / sy


def _variants(body, calls, **options):
    """NAME, calling the compiled functions `calls` ({global name: function}), and NAME.serial,
    calling their .serial variants (nbnet.narrow's objective with its chunks shared among the
    threads, or on one), from one body. Both are drivers (config.driver): they chain compiled
    passes."""
    mark_driver(body)
    compiled = serial(renamed(body, "", **calls), **options)
    compiled.serial = serial(renamed(body, "_serial", **{name: callee.serial for name, callee in calls.items()}),
                             **options)
    return compiled


objective = narrow.objective  # (the name line_search and iterate call: each compiled variant binds its own)
# line_search is inlined into iterate (called, it would hold a second copy of the objective's
# machine code)
line_search = _variants(line_search, dict(objective=narrow.objective), inline="always", cache=False)
iterate = _variants(iterate, dict(objective=narrow.objective, line_search=line_search))
