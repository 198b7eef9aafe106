"""The engine: ResNets as stacked ensembles (models, blocks, fused kernels), initializations, activations,
losses, optimizers and the training loop, the neural-ODE limit, data, and the engine's benchmarks. Imports
only the core."""
