"""The run itself: set-up (`build`), the training loop, checkpoints, logs, signals, the non-finite guard, EMA,
the loss and evaluation."""
