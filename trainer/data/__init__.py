"""Training data: reading records, turning them into examples, and planning their order."""
