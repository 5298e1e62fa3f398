"""Evaluation runs: call candidate models on a prompt set, judge the answers, store eval records."""

from __future__ import annotations

from routerforge.evalrun.runner import Candidate, RecordSink, RunReport, run_eval

__all__ = ["Candidate", "RecordSink", "RunReport", "run_eval"]
