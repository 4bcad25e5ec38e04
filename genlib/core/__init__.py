"""The core: data, ensemble models, losses, optimizers, the training loop and its History.
Nothing here knows about experiments, caching or the book."""
