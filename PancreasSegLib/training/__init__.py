"""Training of both phases of the cascade, resumable, into a complete model bundle.

Modules, one concept each:

- the recipes a run starts from live with the other configurations, in :mod:`PancreasSegLib.model.configs`;
- :mod:`.caches`: each case preprocessed once, with the inference code's own sampling functions;
- :mod:`.workdir`: the work folder next to the bundle (caches, checkpoints, log) and resuming;
- :mod:`.loop`: the budgeted, interruptible training loop with progress bar and log;
- :mod:`.localizer` and :mod:`.segmenter`: one training step and the validation of each phase;
- :mod:`.run`: the whole run, from the dataset check to the written bundle.

>>> from PancreasSegLib.training.run import TrainOptions, train
>>> train(TrainOptions(dataset="Dataset500_Phantom", output="my-model"))  # doctest: +SKIP
"""
