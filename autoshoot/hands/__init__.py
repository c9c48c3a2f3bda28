"""The project's own hand logic (no detector here; the MediaPipe adapter is in ``backends``).

anatomy     plausibility checks of 21 landmarks against adult hand anthropometry
kinematic   the anatomical kinematic hand and its least-squares fit: stage 2's corrected hand
mesh        guidance images (depth, scribble, mask) drawn from a hand; the ``HandMesh`` interface
policy      how the scorer's components become ``hand_score``: fail closed, calibrated weights
"""
