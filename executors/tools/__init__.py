"""Training tools beyond the assignment, off by default: LR range test, weight EMA, mixup/cutmix, TTA."""
