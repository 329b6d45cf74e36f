"""What every layer may use: errors, atomic writes, checkpoints, budgets, precision,
devices and process-wide settings. Imports nothing else from fewlabels."""
