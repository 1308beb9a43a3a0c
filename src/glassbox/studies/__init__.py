"""The journal's studies: one module per study, each holding what its notebooks share beyond the
tools for any model (glassbox's top level). Imports go down: a study uses the tools, never the reverse.

    mnist_mlp       MNIST from data/ and the pixel concepts probed in 01 (loops, thickness, slant)
    find_median     Find-Median lists and families, the list transformers' training, 03's idealisations
    superposition   the toy model of superposition (00): training, geometry, phases
    backdoor        trigger, poisoning, Neural Cleanse, Fine-Pruning (05)
    pruning         neuron scores and pruning curves (06)
    regularisation  dropout / L1 losses through hooks, readability of neurons (06)
    shakespeare     Tiny Shakespeare from data/ and its character tokenizer (07, 08)
    char_features   character rules scored against units, text dashboards, steering (08)
    grokking        modular addition, full-batch training, progress measures (09)
    sae_controls    what an SAE must beat: the k largest neurons, a unit chosen the same way (04)
    models          the journal's models built from a config (the MLP, the transformers) for checkpoints
"""
