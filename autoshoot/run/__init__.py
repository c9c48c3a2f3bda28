"""The run core's building blocks: folders (local or object store) and reuse across runs."""
