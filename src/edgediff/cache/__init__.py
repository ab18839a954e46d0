"""Part B: intermediate-output caching with a Lyapunov long-term latency constraint (seed 002).

``config`` (the parameters), ``model`` (the system model and per-slot objective), ``store``
(the edge cache), ``simulator`` (the seeded T-slot run), ``policies`` / ``optimum`` / ``drc``
(the decision makers) and ``figures`` (the paper's experiments). Only ``drc`` imports torch,
and only ``figures`` imports matplotlib.
"""
