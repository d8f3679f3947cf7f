"""End-to-end tests without a cluster: the operator, the emulator and real trainer processes."""
