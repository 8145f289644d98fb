# Firestore (native mode): circuit-breaker state shared by all instances and order idempotency records.
# A project holds one "(default)" database; import it if it already exists.

resource "google_firestore_database" "default" {
  name                              = "(default)"
  location_id                       = var.region
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "OPTIMISTIC"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  # Order records must outlive a `terraform destroy`.
  deletion_policy = "ABANDON"

  depends_on = [google_project_service.required]
}

# Idempotency records carry `expires_at` (24 h after the order); Firestore deletes them after that time.
resource "google_firestore_field" "order_idempotency_ttl" {
  project    = var.project_id
  database   = google_firestore_database.default.name
  collection = "order_idempotency"
  field      = "expires_at"

  ttl_config {}
  # A TTL field needs no single-field index; skipping it saves index writes on every order.
  index_config {}
}
