"""The training wing: face data, samplers, losses, the PyTorch nets, the trainer, the teacher, evaluation
(float, int8, the board's path, held-out identities), the alignment net's data and training, quantization."""
