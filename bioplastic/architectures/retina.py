"""Retina + ventral-visual-stream (VVS) network of Lindsey, Ocko, Ganguli & Deny (2019).

Lindsey et al. (2019, "A unified theory of early visual representations from retina to cortex through
anatomically constrained deep CNNs", ICLR) model the retina as two convolutional layers feeding a deeper
"ventral visual stream" trained on grayscale CIFAR-10: 9x9 kernels, 32 channels, ReLU, "same" padding, no
pooling, then a fully connected layer (1024 units) and the classifier. A narrow retina output (the
bottleneck, their N_BN of 1-4 channels) makes retinal units centre-surround and first VVS units oriented.
Hanut & Kadmon (2025, arXiv:2502.20580) keep the forward path wide and constrain the *feedback* instead:
low-rank error reaching the retina gives centre-surround receptive fields, full-rank error oriented ones.
``models/retina_vvs.toml`` is that wide network with the authors' additions (their ``AlexNet_cifar`` in
``models/alexnet.py`` and ``train_cifar.py`` of github.com/maherhanut1/LDFA): batch normalisation after every
convolution, dropout 0.5 in the fully connected head, three VVS layers; set ``bottleneck`` to Lindsey's
N_BN for the forward bottleneck.

Module names (``bn`` and ``dropout`` modules only when ``batch_norm`` / ``dropout`` are on)::

    retina.conv1, retina.bn1, retina.relu1, retina.conv2 (bottleneck channels), retina.bn2, retina.relu2
    vvs.conv{i}, vvs.bn{i}, vvs.relu{i}                 (i = 1 .. vvs_depth)
    classifier.flatten, classifier.fc, classifier.relu, classifier.dropout, classifier.out

Where the learning rule applies is the spec's business (``[rule].exclude`` in ``models/retina_vvs.toml``):
the authors convert the VVS convolutions only, so that the error reaching the retina passes through the
first VVS layer's rank-r feedback while the retina's own layers and the classifier stay on backprop
(:data:`VVS_PREFIX`, :data:`RETINA_PREFIX`, :data:`CLASSIFIER_PREFIX`).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from bioplastic._checks import check_positive_int
from bioplastic.architectures.spec import check_dropout, register

__all__ = ["RetinaVVS", "retina_vvs", "RETINA_LAYERS", "RETINA_PREFIX", "VVS_PREFIX", "CLASSIFIER_PREFIX"]

#: The retina's layers (the outputs whose receptive fields :mod:`bioplastic.analysis.receptive_fields`
#: measures): first layer (bipolar-like) and retina output (ganglion-cell-like).
RETINA_LAYERS = ("retina.relu1", "retina.relu2")
#: Module-name prefixes of the three stages (for ``bioplastic.convert(exclude=...)``).
RETINA_PREFIX, VVS_PREFIX, CLASSIFIER_PREFIX = "retina", "vvs", "classifier"


class RetinaVVS(nn.Module):
    """Retina-net + VVS-net (Lindsey et al. 2019).

    Parameters
    ----------
    in_channels : int
        1 for grayscale input (the paper's setting).
    n_classes : int
        Number of outputs d.
    image_size : int
        Input height = width (32 for CIFAR-10); the FC layer's fan-in is ``channels * image_size ** 2``.
    channels : int
        Channels of the first retina layer and, unless ``vvs_channels`` is given, of every VVS layer (32).
    bottleneck : int
        Channels of the retina output (Lindsey's N_BN; equal to ``channels`` for no forward bottleneck).
    kernel_size : int
        Odd kernel side of every convolution (9), padded to keep the spatial size.
    vvs_depth : int
        Number of VVS convolutional layers (Lindsey's D_VVS).
    fc_width : int
        Units of the fully connected layer before the classifier (1024).
    batch_norm : bool
        Batch normalisation (``nn.BatchNorm2d``) between every convolution and its ReLU; the convolutions then
        have no bias (the normalisation's shift replaces it). The authors' network has it; Lindsey et al.
        (2019) do not.
    dropout : float
        Dropout probability between the FC layer's ReLU and the classifier, in ``[0, 1)`` (the authors: 0.5;
        0 leaves the module out).
    vvs_channels : int, optional
        Channels of every VVS layer (default ``channels``, as in Lindsey et al. 2019); fewer make a cheaper
        ventral stream without touching the retina.

    Notes
    -----
    Input (N, in_channels, image_size, image_size) -> logits (N, n_classes). Parameters:
    ``k^2 (c_in C + C N_BN + N_BN C + (D-1) C^2) + (2 C + N_BN + (D-1) C)`` for the convolutions (weights and
    biases; with ``batch_norm`` the second term counts the normalisations' scales instead of the biases, and
    the normalisations' shifts add it once more), ``(C S^2 + 1) F + (F + 1) d`` for the FC layers, with k the
    kernel size, C ``channels``, N_BN ``bottleneck``, D ``vvs_depth``, S ``image_size``, F ``fc_width`` (with
    ``vvs_channels`` V: ``k^2 (c_in C + C N_BN + N_BN V + (D-1) V^2)`` and ``(V S^2 + 1) F``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 10,
        image_size: int = 32,
        channels: int = 32,
        bottleneck: int = 32,
        kernel_size: int = 9,
        vvs_depth: int = 2,
        fc_width: int = 1024,
        batch_norm: bool = False,
        dropout: float = 0.0,
        vvs_channels: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("n_classes", n_classes), ("image_size", image_size),
                            ("channels", channels), ("bottleneck", bottleneck), ("kernel_size", kernel_size),
                            ("vvs_depth", vvs_depth), ("fc_width", fc_width)):
            check_positive_int(name, value)
        vvs_channels = channels if vvs_channels is None else check_positive_int("vvs_channels", vvs_channels)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        if not isinstance(batch_norm, bool):
            raise ValueError(f"batch_norm must be true or false, got {batch_norm!r}")
        check_dropout("dropout", dropout)
        self.image_size = image_size
        pad = kernel_size // 2

        def stage(sizes: list[tuple[int, int]]) -> nn.Sequential:
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            for i, (c_in, c_out) in enumerate(sizes, start=1):
                layers[f"conv{i}"] = nn.Conv2d(c_in, c_out, kernel_size, padding=pad, bias=not batch_norm)
                if batch_norm:
                    layers[f"bn{i}"] = nn.BatchNorm2d(c_out)
                layers[f"relu{i}"] = nn.ReLU()
            return nn.Sequential(layers)

        self.retina = stage([(in_channels, channels), (channels, bottleneck)])
        self.vvs = stage([(bottleneck, vvs_channels)] + [(vvs_channels, vvs_channels)] * (vvs_depth - 1))
        head: OrderedDict[str, nn.Module] = OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(vvs_channels * image_size * image_size, fc_width)),
            ("relu", nn.ReLU()),
        ])
        if dropout > 0:
            head["dropout"] = nn.Dropout(dropout)
        head["out"] = nn.Linear(fc_width, n_classes)
        self.classifier = nn.Sequential(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, n_classes) of images ``x`` (N, in_channels, image_size, image_size).

        The convolutional layers accept any image size (receptive-field probing runs the retina on small
        patches); the FC layer needs ``image_size``."""
        return self.classifier(self.vvs(self.retina(x)))


#: Builder of the registered architecture ``"retina_vvs"``: the class itself (spec keys are its keyword
#: arguments; see :class:`RetinaVVS` for them and what is raised).
retina_vvs = register("retina_vvs")(RetinaVVS)
