"""scikit-learn's callback API (sklearn.callback, scikit-learn 1.9 and later) for nbnet's
estimators: `set_callbacks(ProgressBar(), ScoringMonitor(scoring="accuracy"))` on an
MLPClassifier or MLPRegressor, alone or inside a Pipeline or a GridSearchCV.

A fit is a task with one subtask per epoch (per iteration of L-BFGS). A subtask begins when the
previous one ends, so the last one begun never runs: it is ended empty, as scikit-learn's
LogisticRegression ends its own (`Subtasks.close`). At the end of each, the callbacks get the
training data and, when they ask for one, a copy of the estimator as it stands after that
epoch (its coefs_ and intercepts_ copied): ScoringMonitor's score of it is the score of the
same fit stopped by max_iter at that epoch. A callback that returns True stops the fit.

Without callbacks nothing here runs, and the compiled epochs go on running many epochs per
call; with them, one epoch per call (nbnet.stochastic). With a scikit-learn older than the
API, `CallbackSupportMixin` is an empty class and `with_callbacks` leaves a method as it is.
"""

try:
    from sklearn.callback import CallbackSupportMixin, with_callbacks
    AVAILABLE = True
except ImportError:  # (scikit-learn before 1.9: no callbacks)
    AVAILABLE = False

    class CallbackSupportMixin:
        pass

    def with_callbacks(method):
        return method


def fit_context(estimator, max_subtasks, X, y, metadata):
    """The root callback context of a fit, its begin hooks called (None without the API). Made
    even without callbacks of its own, so that a Pipeline's or a search's task tree takes it in."""
    if not AVAILABLE:
        return None
    context = estimator._init_callback_context(max_subtasks=max_subtasks)
    context.call_on_fit_task_begin(estimator=estimator, X=X, y=y, metadata=metadata)
    return context


class Subtasks:
    """The per-epoch subtasks of a fit's callback context. snapshot(): the reconstruction
    attributes of the estimator as it stands (called only when a callback asks for them)."""

    def __init__(self, estimator, context, X, y, metadata, name, snapshot):
        self.estimator, self.context, self.X, self.y, self.metadata = estimator, context, X, y, metadata
        self.name, self.snapshot, self.done = name, snapshot, 0
        self.current = self._begin()

    def _begin(self):
        context = self.context.subcontext(task_name=f"{self.name} {self.done}")
        context.call_on_fit_task_begin(estimator=self.estimator, X=self.X, y=self.y, metadata=self.metadata,
                                       reconstruction_attributes=self.snapshot)
        return context

    def ended(self, snapshot=None):
        """End the current subtask (the epoch that just ran), begin the next; True when a callback
        asks the fit to stop."""
        stop = self.current.call_on_fit_task_end(estimator=self.estimator, X=self.X, y=self.y,
                                                 metadata=self.metadata,
                                                 reconstruction_attributes=snapshot or self.snapshot)
        self.done += 1
        self.current = self._begin()
        return bool(stop)

    def close(self):
        """End the subtask begun last, which never ran, empty."""
        self.current.call_on_fit_task_end(estimator=self.estimator)


def has_callbacks(estimator):
    """True when callbacks are set on the estimator (its own or propagated by a meta-estimator)."""
    return AVAILABLE and bool(getattr(estimator, "_skl_callbacks", None))
