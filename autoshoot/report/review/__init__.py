"""The review loop: a person decides in the browser, the next night listens, approved pictures leave.

- ``decisions``: ``RUN/decisions.csv`` (read, write atomically under a lock) and what the next
  run does with a SKU given the decisions of earlier runs (frozen, re-rendered, pending).
- ``runview``: what a finished RUN folder holds per SKU (candidates, scores, the prompt).
- ``nightly``: the runner's one hook that applies those verdicts to a new run's plans.
- ``server``: ``autoshoot review RUN``, the report with buttons and keyboard shortcuts.
- ``export``: ``autoshoot export RUN --to DIR`` (a manifest, or kohya image/caption pairs).
"""
