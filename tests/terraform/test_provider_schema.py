"""Every `google_*` resource and data block (and the provider block) of terraform/*.tf against the pinned
Google provider's schema, offline.

The schema comes from the provider's prebuilt CDKTF bindings, `cdktf-cdktf-provider-google` 16.x, which are
generated from Google provider 6.x: terraform/versions.tf pins provider major 6, from the version the bindings
describe, and test_provider_pin_matches_the_bindings holds the two together. scripts/bootstrap.sh downloads
the wheel (with KISGW_WITH_CHECKOV=1, as scripts/test.sh sets); where it cannot be had, these tests skip with
the reason. provider_schema.py reads it and checks the blocks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from provider_schema import (
    Checker,
    ProviderSchema,
    SchemaUnavailable,
    allows,
    config_blocks,
    load_marked,
    provider_schema,
)
from tf_helpers import ROOT, TF_DIR, attr, load_tf

BINDINGS_MAJOR = "16"  # cdktf-cdktf-provider-google 16.x is Google provider 6.x
PROVIDER_MAJOR = 6


@pytest.fixture(scope="module")
def google_schema() -> ProviderSchema:
    try:
        schema = provider_schema(ROOT)
        schema.provider_version()
        load_marked(TF_DIR / "versions.tf")
    except SchemaUnavailable as exc:
        pytest.skip(str(exc))
    return schema


@pytest.fixture(scope="module")
def parsed_tf() -> dict[str, dict]:
    return {p.name: load_marked(p) for p in sorted(TF_DIR.glob("*.tf"))}


def check_text(schema: ProviderSchema, tmp_path: Path, text: str, name: str = "case.tf") -> list[str]:
    path = tmp_path / name
    path.write_text(text)
    return Checker(schema).check_files({name: load_marked(path)})


def test_provider_pin_matches_the_bindings(google_schema):
    assert google_schema.bindings_version.split(".")[0] == BINDINGS_MAJOR
    version = google_schema.provider_version()
    major, minor = (int(p) for p in version.split(".")[:2])
    assert major == PROVIDER_MAJOR, f"bindings {google_schema.bindings_version} describe provider {version}"
    [tf_block] = load_tf(TF_DIR / "versions.tf")["terraform"]
    [providers] = tf_block["required_providers"]
    google = attr(providers, "google")
    assert google["source"] == "hashicorp/google"
    constraint = google["version"]
    # The schema checked is the one Terraform may install: the pin admits the bindings' provider version,
    # nothing older within the major (where an argument used here might not exist yet), and no next major.
    assert allows(constraint, version), (constraint, version)
    assert not allows(constraint, f"{major + 1}.0.0"), constraint
    if minor > 0:
        assert not allows(constraint, f"{major}.{minor - 1}.0"), constraint


def test_version_constraints_read_as_terraform_does():
    assert allows("~> 6.50", "6.50.0") and allows("~> 6.50", "6.99.1")
    assert not allows("~> 6.50", "6.49.9") and not allows("~> 6.50", "7.0.0")
    assert allows("~> 6.50.1", "6.50.9") and not allows("~> 6.50.1", "6.51.0")
    assert allows(">= 6.0, < 7.0", "6.3.0") and not allows(">= 6.0, < 7.0", "7.0.0")
    assert allows("6.50.0", "6.50.0") and not allows("!= 6.50.0", "6.50.0")


def test_every_google_block_matches_the_provider_schema(google_schema, parsed_tf):
    checker = Checker(google_schema)
    errors = checker.check_files(parsed_tf)
    assert errors == [], "\n".join(errors)
    # Not vacuous: every google_* resource and data block of the configuration was looked at.
    expected = {f"{kind} {t}.{n}" for doc in parsed_tf.values() for kind in ("resource", "data")
                for t, n, _ in config_blocks(doc, kind) if t.startswith("google_")}
    assert len(expected) >= 20
    expected.add("provider google")  # versions.tf: project, region, default_labels
    assert set(checker.checked) == expected


def test_checker_catches_a_misspelt_argument_and_a_missing_required_one(google_schema, tmp_path):
    text = (TF_DIR / "functions.tf").read_text()
    assert check_text(google_schema, tmp_path, text) == []

    misspelt, n = re.subn(r"\bentry_point\b(?=\s*=)", "entry_pont", text, count=1)
    assert n == 1
    errors = check_text(google_schema, tmp_path, misspelt)
    assert errors == ["case.tf: google_cloudfunctions2_function.gateway.build_config: unknown argument 'entry_pont' "
                      "(not in the schema of google_cloudfunctions2_function.build_config)"]

    missing, n = re.subn(r"^  location\s*=.*\n", "", text, count=1, flags=re.M)
    assert n == 1
    errors = check_text(google_schema, tmp_path, missing)
    assert errors == ["case.tf: google_cloudfunctions2_function.gateway: missing required argument 'location'"]


NESTED = """
resource "google_cloudfunctions2_function" "f" {
  name     = "f"
  location = "asia-northeast3"
  service_config {
    dynamic "secret_environment_variables" {
      for_each = var.secrets
      content {
        key        = secret_environment_variables.value.env
        project_id = "p"
        secret     = secret_environment_variables.value.id
        version    = "latest"
      }
    }
    secret_volumes {
      mount_path = "/etc/ca"
      project_id = "p"
      secret     = "redis-ca"
      versions {
        version = "latest"
        path    = "ca.pem"
      }
    }
  }
}
"""


def test_checker_looks_inside_dynamic_and_nested_blocks(google_schema, tmp_path):
    assert check_text(google_schema, tmp_path, NESTED) == []
    # In a dynamic block's content: a misspelt argument, and a required one (secret) left out.
    broken = NESTED.replace('project_id = "p"\n        secret     = secret_environment_variables.value.id\n',
                            'projectid = "p"\n')
    assert broken != NESTED
    errors = check_text(google_schema, tmp_path, broken)
    where = "case.tf: google_cloudfunctions2_function.f.service_config.secret_environment_variables"
    assert sorted(errors) == sorted([
        f"{where}: unknown argument 'projectid' (not in the schema of "
        "google_cloudfunctions2_function.service_config.secret_environment_variables)",
        f"{where}: missing required argument 'project_id'",
        f"{where}: missing required argument 'secret'",
    ])
    # Three levels down, in static blocks.
    deep = NESTED.replace('path    = "ca.pem"', 'paht    = "ca.pem"')
    assert deep != NESTED
    errors = check_text(google_schema, tmp_path, deep)
    where = "case.tf: google_cloudfunctions2_function.f.service_config.secret_volumes.versions"
    assert sorted(errors) == [f"{where}: missing required argument 'path'",
                              f"{where}: unknown argument 'paht' (not in the schema of "
                              "google_cloudfunctions2_function.service_config.secret_volumes.versions)"]


VALID_META = """
resource "google_storage_bucket" "b" {
  count    = 1
  provider = google
  name     = "b"
  location = "asia-northeast3"
  versioning {
    enabled = true
  }
  dynamic "lifecycle_rule" {
    for_each = [1, 2]
    iterator = rule
    content {
      condition {
        age = rule.value
      }
      action {
        type = "Delete"
      }
    }
  }
  lifecycle {
    prevent_destroy       = true
    create_before_destroy = false
    ignore_changes        = [labels]
    precondition {
      condition     = true
      error_message = "x"
    }
  }
  provisioner "local-exec" {
    command = "true"
  }
  depends_on = [google_project_service.s]
}

resource "google_project_service" "s" {
  for_each = toset(["run.googleapis.com"])
  service  = each.key
}

data "google_project" "p" {
  count = 1
  lifecycle {
    postcondition {
      condition     = true
      error_message = "x"
    }
  }
}
"""


def test_meta_arguments_dynamic_blocks_and_data_sources_pass(google_schema, tmp_path):
    assert check_text(google_schema, tmp_path, VALID_META) == []


@pytest.mark.parametrize(("snippet", "expected"), [
    ('provider "google" {\n  projct = "x"\n}\n',
     "case.tf: provider google: unknown argument 'projct' (not in the schema of google)"),
    ('data "google_project" "p" {\n  projectid = "x"\n}\n',
     "case.tf: data.google_project.p: unknown argument 'projectid' (not in the schema of google_project)"),
    ('resource "google_storage_bucket_thing" "b" {\n  name = "b"\n}\n',
     "case.tf: google_storage_bucket_thing.b: no resource type google_storage_bucket_thing in google provider 6."),
    ('resource "google_project_service" "s" {\n  count = 1\n  for_each = {}\n  service = "x"\n}\n',
     "case.tf: google_project_service.s: count and for_each are mutually exclusive"),
    ('resource "google_project_service" "s" {\n  service = "x"\n  lifecycle {\n    prevent_destroyy = true\n  }\n}\n',
     "case.tf: google_project_service.s.lifecycle: unknown lifecycle setting 'prevent_destroyy' for a resource block"),
    ('data "google_project" "p" {\n  lifecycle {\n    prevent_destroy = true\n  }\n}\n',
     "case.tf: data.google_project.p.lifecycle: unknown lifecycle setting 'prevent_destroy' for a data block"),
    ('resource "google_storage_bucket" "b" {\n  name = "b"\n  location = "x"\n'
     '  versioning {\n    enabled = true\n  }\n  versioning {\n    enabled = false\n  }\n}\n',
     "case.tf: google_storage_bucket.b: block 'versioning' may appear at most once, found 2"),
    ('resource "google_storage_bucket" "b" {\n  name = "b"\n  location = "x"\n  versioning = { enabled = true }\n}\n',
     "case.tf: google_storage_bucket.b: 'versioning' is a block: write `versioning { ... }`, not `versioning = ...`"),
    ('resource "google_storage_bucket" "b" {\n  name = "b"\n  location = "x"\n  labels {\n    a = "b"\n  }\n}\n',
     "case.tf: google_storage_bucket.b: 'labels' is an argument: write `labels = ...`, not a block"),
    ('resource "google_storage_bucket" "b" {\n  name = "b"\n  location = "x"\n'
     '  dynamic "versionin" {\n    for_each = [1]\n    content {\n      enabled = true\n    }\n  }\n}\n',
     "case.tf: google_storage_bucket.b.dynamic[versionin]: dynamic block for 'versionin', which is not in the "
     "schema of google_storage_bucket"),
    ('resource "google_secret_manager_secret" "s" {\n  secret_id = "x"\n}\n',
     "case.tf: google_secret_manager_secret.s: missing required block 'replication'"),
])
def test_checker_reports(google_schema, tmp_path, snippet, expected):
    errors = check_text(google_schema, tmp_path, snippet)
    assert len(errors) == 1 and errors[0].startswith(expected), errors


def test_schema_is_parsed_once_per_run(google_schema):
    assert provider_schema(ROOT) is google_schema
    first = google_schema.schema("resource", "google_cloudfunctions2_function")
    assert google_schema.schema("resource", "google_cloudfunctions2_function") is first
