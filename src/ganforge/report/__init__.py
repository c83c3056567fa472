"""A run's training history as one HTML page: ``ganforge report RUN``.

``build_report(run_dir)`` writes ``RUN/report/index.html`` and, beside it, one
PNG per figure (losses, D outputs, throughput, skipped updates, other training
scalars, evaluation metrics; each over generator steps and over training
seconds, plus a four-panel overview) and the sample grids over time as a strip
(``samples.png``) and an animation (``samples.gif``). The folder is
self-contained: no scripts, no network, relative links only.

Plotting needs the optional ``report`` extra (matplotlib); reading the history
(:mod:`ganforge.report.history`) does not.
"""

from ganforge.report.build import Report, build_report
from ganforge.report.history import History, read_history

__all__ = ["History", "Report", "build_report", "read_history"]
