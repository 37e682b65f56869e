"""Torch model code, built from the declarative specs in ``models/*.toml``.

``load_spec("mlp_mnist")`` reads ``models/mlp_mnist.toml`` (installed as ``bioplastic.specs``);
``build_model(spec)`` builds the ``torch.nn.Module`` named by ``spec["architecture"]``. Each
architecture module registers its builder with :func:`register`.
"""
from bioplastic.architectures.spec import available_specs, build_model, load_spec, register

__all__ = ["available_specs", "build_model", "load_spec", "register"]
