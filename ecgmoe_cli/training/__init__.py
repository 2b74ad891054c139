"""Training loops, losses, metrics and checkpoints shared by train and finetune."""
