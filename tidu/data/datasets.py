"""Built-in datasets, all offline: the tutorial's toy data and scikit-learn's bundled sets.

>>> d = load("iris"); d.X.shape, d.X.dtype, d.y.dtype, d.task, d.target_names
((150, 4), dtype('float32'), dtype('int64'), 'classification', ['setosa', 'versicolor', 'virginica'])
>>> load("mnist")
Traceback (most recent call last):
...
ValueError: tidu.data.load: unknown dataset 'mnist'; known: breast_cancer, diabetes, digits, iris, tutorial, wine
"""
import numpy as np

__all__ = ["load", "available", "Bunch"]


class Bunch:
    """A loaded dataset: ``X`` (float32), ``y`` (int64 classes or float32 values), ``feature_names``,
    ``target_names`` (class names, or the target's name for regression), ``task`` and ``name``."""

    def __init__(self, name, X, y, feature_names, target_names, task, description=""):
        self.name, self.X, self.y, self.task = name, X, y, task
        self.feature_names, self.target_names = list(feature_names), list(target_names)
        self.description = description

    def __len__(self):
        return len(self.X)

    def __iter__(self):  # X, y = load(name)
        return iter((self.X, self.y))

    def __repr__(self):
        return (f"Bunch(name={self.name!r}, X={self.X.shape} {self.X.dtype}, y={self.y.shape} {self.y.dtype}, "
                f"task={self.task!r})")

    def as_frame(self):
        """A pandas DataFrame: one column per feature, then ``target``."""
        from .preprocess import _pandas
        df = _pandas().DataFrame(self.X, columns=self.feature_names)
        df["target"] = self.y
        return df

    def to_dataset(self):
        """A ``TensorDataset(X, y)`` for a ``DataLoader``."""
        from .dataset import TensorDataset
        return TensorDataset(self.X, self.y)


def _tutorial():
    # The tutorial's linear regression: y = θ0 + θ1·x fitted to five points.
    X = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]], dtype=np.float32)
    y = np.array([2.0, 4.0, 5.0, 4.0, 5.0], dtype=np.float32)
    return Bunch("tutorial", X, y, ["x"], ["y"], "regression", "The tutorial's toy linear-regression data.")


def _sklearn(loader_name, task):
    def load_():
        try:
            from sklearn import datasets
        except ImportError:
            raise ImportError(f"tidu.data.load({loader_name[5:]!r}) reads scikit-learn's bundled copy: "
                              "pip install 'tidu[data]'") from None
        raw = getattr(datasets, loader_name)()
        X = np.asarray(raw.data, dtype=np.float32)
        if task == "classification":
            y, target_names = np.asarray(raw.target, dtype=np.int64), [str(t) for t in raw.target_names]
        else:
            y, target_names = np.asarray(raw.target, dtype=np.float32), ["target"]
        names = getattr(raw, "feature_names", None)
        names = [str(n) for n in names] if names is not None else [f"x{i}" for i in range(X.shape[1])]
        return Bunch(loader_name[5:], X, y, names, target_names, task, getattr(raw, "DESCR", ""))
    return load_


_LOADERS = {"tutorial": _tutorial,
            "digits": _sklearn("load_digits", "classification"),
            "iris": _sklearn("load_iris", "classification"),
            "breast_cancer": _sklearn("load_breast_cancer", "classification"),
            "wine": _sklearn("load_wine", "classification"),
            "diabetes": _sklearn("load_diabetes", "regression")}


def available():
    """The names ``load`` knows."""
    return sorted(_LOADERS)


def load(name):
    """Load a built-in dataset by name (see :func:`available`); nothing is downloaded."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in _LOADERS:
        raise ValueError(f"tidu.data.load: unknown dataset {name!r}; known: {', '.join(available())}")
    return _LOADERS[key]()
