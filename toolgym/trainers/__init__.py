"""How the policy improves: RL math, training loops, MoE models, optimizers, checkpoints."""
