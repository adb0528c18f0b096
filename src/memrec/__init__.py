"""memrec: memory-augmented sequential recommendation, evaluated honestly.

The Python API (:mod:`memrec.api`) is imported on first use, so that ``import memrec`` stays cheap:
``memrec.train(...)`` trains a model and returns a :class:`~memrec.api.Recommender`,
``memrec.load(path)`` loads a run, and a Recommender's ``recommend`` and ``evaluate`` answer with
the data set's own item ids. ``memrec.train`` is also the training subpackage (``memrec.train.Trainer``);
called, it is :func:`memrec.api.train`.

Example:
    >>> import memrec
    >>> sorted(memrec.__all__), callable(memrec.train)
    (['Recommendation', 'Recommender', 'load', 'run_config', 'train'], True)
"""
import importlib
import sys
import types

__version__ = "0.1.0"
__all__ = ["train", "load", "Recommender", "Recommendation", "run_config"]


class _TrainPackage(types.ModuleType):
    """The subpackage ``memrec.train``, which, called, is :func:`memrec.api.train`."""

    def __call__(self, *args, **kwargs):
        from memrec.api import train

        return train(*args, **kwargs)


class _Package(types.ModuleType):
    """``memrec`` itself: when the import system binds the subpackage ``memrec.train`` here, the
    subpackage is made callable, so that ``memrec.train(...)`` trains whichever was imported first."""

    def __setattr__(self, name, value):
        if name == "train" and type(value) is types.ModuleType:
            value.__class__ = _TrainPackage
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name == "train":
        return importlib.import_module("memrec.train")  # binds memrec.train, callable (see _Package)
    if name in __all__:
        from memrec import api

        return getattr(api, name)
    raise AttributeError(f"module 'memrec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
