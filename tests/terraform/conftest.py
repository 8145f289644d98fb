"""Fixtures of the Terraform tests; the helpers they use live in tf_helpers.py."""

from tf_helpers import build_bundle, gen_tfvars, tf  # noqa: F401 (fixtures)
