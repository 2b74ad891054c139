"""The ECG-MoE model, its LoRA adapters and the baselines. Imports nothing from io/ or commands/."""
