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
