"""The run core's building blocks: folders (local or object store), reuse across runs, and the
models of a run inside its GPU budget (``models``: the residency manager)."""
