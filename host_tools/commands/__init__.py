"""One module per group of ``wearface`` verbs.

Each module defines ``register(subparsers)``, which adds its verbs with ``set_defaults(func=...)``;
``func(args)`` returns an exit status (0 or None for success).  Modules import heavy things
(torch, OpenCV) inside the verb functions so ``wearface --help`` stays fast.
"""
