# The one source bundle (scripts/build_bundle.py) every function is built from. Objects are named by content
# hash and never overwritten, so earlier bundles stay available: set bundle_object to roll back.

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only build inputs written by Terraform; object access is audited by Cloud Audit Logs, a second access-log bucket adds nothing.
  name                        = "${var.project_id}-${var.name_prefix}-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  # Keep bundles for rollback a while, but not forever.
  lifecycle_rule {
    condition {
      age = 180
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.required]
}

resource "google_storage_bucket_object" "bundle" {
  count  = var.bundle_object == "" ? 1 : 0
  name   = basename(var.bundle_path)
  bucket = google_storage_bucket.source.name
  source = var.bundle_path

  lifecycle {
    precondition {
      condition     = can(regex("^kisgw-[0-9a-f]{12}\\.zip$", basename(var.bundle_path)))
      error_message = "bundle_path must point at a zip built by scripts/build_bundle.py (kisgw-<hash>.zip)."
    }
  }
}

locals {
  bundle_object = var.bundle_object != "" ? var.bundle_object : google_storage_bucket_object.bundle[0].name
}
