"""Dataset loaders: training data (embedded MNIST, scikit-learn digits, CIFAR-10 from a path) and neural
data (Kriegeskorte 2008, Ringach 2002, published V1 statistics), all from local files; nothing is
downloaded."""
from bioplastic.data.base import DATASETS, ArrayDataset, load_dataset, select_classes
from bioplastic.data.neural import load_kriegeskorte2008, load_ringach2002, load_v1_statistics, resize_images

__all__ = ["DATASETS", "ArrayDataset", "load_dataset", "select_classes", "load_kriegeskorte2008", "load_ringach2002", "load_v1_statistics", "resize_images"]
