"""Training: pretraining (NTP + FIM), SFT, LoRA and GRPO on one loop. Empty until those land."""
