"""Dataset loaders: training data (embedded MNIST, scikit-learn digits, CIFAR-10 from a path) and neural
data (Kriegeskorte 2008, Ringach 2002, published V1 statistics), all from local files; nothing is
downloaded."""
from bioplastic.data.base import DATASETS, ArrayDataset, load_dataset

__all__ = ["DATASETS", "ArrayDataset", "load_dataset"]
