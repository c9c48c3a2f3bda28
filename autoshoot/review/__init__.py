"""Moved to ``autoshoot.report.review`` (the ``report/`` package of STYLE.md's layout). The
modules here re-export theirs for imports written before the move."""
