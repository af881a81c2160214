"""What executes: the mapping engine, the scheduler and run executor, streaming and delivery."""
