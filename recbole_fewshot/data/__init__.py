"""The few-shot split, its configuration and its evaluation dataloader."""
