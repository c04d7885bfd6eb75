"""``rprim report``: models x task groups, gains over a baseline, paired tests, figures.

    >>> from rprim.evaluators import report
    >>> r = report.load(["study/results/baseline", "study/results/midas"])
    >>> r.frame()          # pandas: model, group, accuracy, ci95_lo, ci95_hi, k, n, gain, ...
    >>> r.write("study/report")   # report.md, *.png, report.html (self-contained)

Data first, then view: ``inputs`` reads each model's results folder, ``tables`` computes every
table once (:meth:`Report.data`, written as ``report.json``) with ``stats`` (intervals, paired
tests), and ``render`` draws only that data (markdown, HTML) with ``figures``. ``probe`` sorts a
variable-assignment model's wrong answers by where they came from.
"""

from .tables import Report, check_report_folder, load

__all__ = ["Report", "check_report_folder", "load"]
