"""A faithful in-process Kubernetes API emulator for tests and benchmarks (built on kmock)."""
