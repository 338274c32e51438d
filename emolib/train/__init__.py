"""Training: the one model-agnostic Trainer, the fit functions of the three models, and the recipes behind the CLI and notebooks."""
