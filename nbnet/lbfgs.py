"""Full-batch training by L-BFGS (scikit-learn's solver="lbfgs"): minimise the mean cost of the
whole training set plus the L2 term,

    J(theta) = 1/n sum_s J_s + lambda/(2n) sum_m ||W^m||^2,

over one flat vector theta of every weight and bias (Network.flat_parameters).

* A narrow network (nbnet.narrow: the small data sets) runs nbnet.quasi_newton's compiled
  L-BFGS, which is SciPy's L-BFGS-B without bounds, step for step, in one compiled call that
  evaluates J and dJ/dtheta itself (nbnet.narrow's objective). No SciPy is needed.
* A wider one runs SciPy's L-BFGS-B, which asks for J and dJ/dtheta at each point; nbnet's
  compiled passes then run once over all n samples: kernels.forward (z^m, a^m),
  kernels.add_costs (sum_s J_s), kernels.backward (delta^m, then dJ/dW^m and dJ/db^m written
  straight into the gradient vector). The network's weights are views of theta, so the only
  copies per call are the ones SciPy needs: its point into theta, and the gradient handed back.
  There an evaluation takes far longer than SciPy's own work around it.

Both stop by the same rules: `max_iter`, `max_fun` and `tol` mean what
scipy.optimize.minimize's maxiter, maxfun and gtol mean for L-BFGS-B.
"""

import contextlib

import numpy as np

from . import kernels, narrow, passes, quasi_newton


def one_blas_thread():
    """A context in which BLAS (SciPy's L-BFGS-B calls it on vectors of every parameter) runs on
    one thread. Its threads spin for a while after each call, and so took the cores from Numba's
    threads in the objective between two calls: 12 ms per iteration instead of 0.1 ms on the
    diabetes data (bench/versus_sklearn.py). threadpoolctl comes with scikit-learn."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


class FullBatch:
    """J(theta) and dJ/dtheta of a whole training set: `objective(theta)` returns both.

    X, y are the network's checked inputs and targets (Network.as_inputs, as_labels); l2 is
    lambda and n_train the n of the L2 term (len(X) unless given)."""

    def __init__(self, net, X, y, l2=0.0, n_train=None):
        self.net, self.X, self.y = net, X, y
        self.n = X.shape[0]
        self.l2, self.n_train = float(l2), n_train or X.shape[0]
        self.theta = net.flat_parameters()
        self.gradient = np.empty_like(self.theta)
        self.calls = 0
        narrow = passes.narrow_pays(net.weights)
        net.family = "narrow" if narrow else "kernels"  # (what it evaluates and predicts with: Network.narrow_passes)
        if narrow:
            self._narrow_objective()
            return
        self.grads_W, self.grads_b = (tuple(views) for views in net.parameter_views(self.gradient))
        self.weights, self.biases = tuple(net.weights), tuple(net.biases)  # (views of theta: made once)
        self.zs, self.activations, self.deltas = (passes.layer_buffers(self.weights, self.n) for _ in range(3))
        self.parts = passes.parts_buffers(self.weights, self.deltas)
        self.J, self.correct = passes.cost_buffers(self.n, X.dtype)
        parallel = passes.parallel_pays(self.weights, self.n)
        self.forward, self.add_costs, self.backward = (passes.variant(driver, parallel) for driver in
                                                       (kernels.forward, kernels.add_costs, kernels.backward))

    def _narrow_objective(self):
        """`objective` for a narrow network: one call of nbnet.narrow's objective, which reads
        SciPy's point and writes the float64 gradient it hands back, into buffers made once.
        `narrow_arguments` and `parallel` are what nbnet.quasi_newton's loop calls it with."""
        net, weights = self.net, tuple(self.net.weights)
        self.parallel = passes.narrow_parallel(weights, self.n)
        driver = passes.variant(narrow.objective, self.parallel)
        self.narrow_arguments = (passes.sizes_of(weights), net.acts, net.cost_function.code, self.theta, self.X,
                                 self.y, np.arange(self.n), self.l2 / self.n_train,
                                 passes.narrow_buffers(weights, self.n, self.y), self.gradient, np.zeros(2))
        gradient_out = np.empty(self.theta.size)

        def objective(theta):
            self.calls += 1
            theta = theta if theta.dtype == np.float64 else theta.astype(np.float64)
            # (SciPy copies the gradient it keeps)
            return driver(theta, *self.narrow_arguments, gradient_out), gradient_out

        self.objective = objective

    def objective(self, theta):
        """(J, dJ/dtheta) at theta (float64 for SciPy, whatever the network's dtype)."""
        net, weights = self.net, self.weights
        self.theta[...] = theta
        code, totals = net.cost_function.code, np.zeros(2)
        self.forward(weights, self.biases, net.acts, self.X, self.zs, self.activations)
        self.add_costs(self.zs, self.activations, net.acts, code, self.y, self.J, self.correct, totals)
        self.backward(weights, net.acts, code, self.X, self.y, self.l2 / self.n_train, self.zs, self.activations,
                      self.deltas, self.parts, self.grads_W, self.grads_b, None, None)
        self.calls += 1
        return totals[0] / self.n + net.l2_penalty(self.l2, self.n_train), self.gradient.astype(np.float64)


class Result:
    """The end of a fit by nbnet.quasi_newton, with the fields of SciPy's OptimizeResult that nbnet
    reads: x, fun (J at x), nit (iterations), nfev (evaluations), status (0: converged, 1: the
    limit of iterations or evaluations, 2: the line search failed or a callback stopped it),
    message and success."""

    def __init__(self, x, fun, nit, nfev, status, message):
        self.x, self.fun, self.nit, self.nfev, self.status, self.message = x, fun, nit, nfev, status, message
        self.success = status == 0


def minimize(net, X, y, l2=0.0, n_train=None, max_iter=200, max_fun=15000, tol=1e-4, verbose=False, callback=None):
    """Train `net` in place by L-BFGS on the whole of (X, y); returns SciPy's OptimizeResult or a
    Result (fun: the final J, nit: iterations, nfev: evaluations, status 0 when it converged).
    callback(theta) after each iteration, as SciPy calls it (raising StopIteration stops)."""
    problem = FullBatch(net, X, y, l2, n_train)
    if net.family == "narrow":
        result = compiled_minimize(problem, max_iter, max_fun, tol, verbose, callback)
    else:
        result = scipy_minimize(problem, max_iter, max_fun, tol, verbose, callback)
    problem.theta[...] = result.x
    return result


def compiled_minimize(problem, max_iter, max_fun, tol, verbose, callback):
    """nbnet.quasi_newton's L-BFGS on a narrow network's FullBatch: all its iterations in one
    compiled call, or one call per iteration when a line is printed or a callback called after
    each (the same bits either way)."""
    state = quasi_newton.State(problem.theta)
    counters = state.counters
    iterate = quasi_newton.iterate if problem.parallel else quasi_newton.iterate.serial
    limits = (int(max_iter), int(max_fun), float(tol), quasi_newton.RELATIVE_REDUCTION)
    one_by_one = bool(verbose) or callback is not None
    status, message = None, None
    while counters[quasi_newton.STATUS] == quasi_newton.RUNNING:
        done = counters[quasi_newton.ITERATION]
        # (max_iter 0 runs one iteration, as SciPy's L-BFGS-B does)
        iterate(*state.arrays(), *limits, 1 if one_by_one else max(1, int(max_iter)), problem.narrow_arguments)
        if counters[quasi_newton.ITERATION] == done:
            continue  # (the first evaluation, or a line search that failed and restarts)
        if verbose:
            print(f"Iteration {counters[quasi_newton.ITERATION]}, loss = {state.values[0]:.8f}, largest |gradient| = "
                  f"{np.abs(state.g).max():.3e}")
        if callback is not None:
            try:
                callback(state.x.copy())
            except StopIteration:
                status, message = 2, "STOP: the callback raised StopIteration"
                break
    code = int(counters[quasi_newton.STATUS])
    if status is None:
        status = {quasi_newton.GRADIENT_SMALL: 0, quasi_newton.REDUCTION_SMALL: 0, quasi_newton.ITERATIONS: 1,
                  quasi_newton.EVALUATIONS: 1}.get(code, 2)
        message = quasi_newton.MESSAGES[code]
    problem.calls += int(counters[quasi_newton.EVALUATION])
    return Result(state.x, float(state.values[0]), int(counters[quasi_newton.ITERATION]),
                  int(counters[quasi_newton.EVALUATION]), status, message)


def scipy_minimize(problem, max_iter, max_fun, tol, verbose, callback):
    """SciPy's L-BFGS-B on a FullBatch."""
    from scipy import optimize

    options = dict(maxfun=int(max_fun), maxiter=int(max_iter), gtol=float(tol))
    if verbose:
        options["iprint"] = 1  # (newer SciPy warns about iprint; it is only passed when asked for)
    with one_blas_thread():
        return optimize.minimize(problem.objective, problem.theta.astype(np.float64), method="L-BFGS-B", jac=True,
                                 options=options, callback=callback)
