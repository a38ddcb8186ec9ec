"""Built-in dataset plugins: ``digits``, the MNIST family, ``cifar10``, ``image-folder``
and ``embeddings``.
"""
