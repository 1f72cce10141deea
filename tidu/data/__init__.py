"""Data in: datasets, batching, splits, tabular preprocessing and the built-in datasets.

``import tidu.data`` needs only NumPy; pandas and scikit-learn (the ``data`` extra) are imported
when ``read_table``, ``TabularPreprocessor`` or ``load`` first needs them.

>>> import tidu as td
>>> d = td.data.load("tutorial"); d.X.ravel().tolist(), d.y.tolist()
([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 5.0, 4.0, 5.0])
>>> xb, yb = next(iter(td.data.DataLoader(td.data.TensorDataset(d.X, d.y), batch_size=2)))
>>> xb.shape, yb.shape
((2, 1), (2,))
"""
from .dataset import ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset
from .datasets import Bunch, available, load
from .loader import (BatchSampler, DataLoader, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler,
                     default_collate)
from .preprocess import TabularPreprocessor, read_table
from .split import random_split, stratified_split
from . import transforms
from .transforms import (Compose, Lambda, Normalize, RandomCrop, RandomHorizontalFlip, RandomVerticalFlip, ToTensor,
                         Transform, TransformDataset)

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "Subset", "ConcatDataset", "DataLoader", "default_collate",
           "Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "BatchSampler", "random_split",
           "stratified_split", "read_table", "TabularPreprocessor", "load", "available", "Bunch", "transforms", "Transform", "Compose", "Lambda", "ToTensor", "Normalize", "RandomCrop",
           "RandomHorizontalFlip", "RandomVerticalFlip", "TransformDataset"]
