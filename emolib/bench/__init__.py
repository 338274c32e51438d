"""Developer tooling: ``emolib bench`` measures the fast path against eager and writes BENCHMARKS.md. Nothing but the CLI imports it."""
