# Secret Manager: values of the KIS credentials, API keys and the alert webhook are set with gcloud (see
# DEPLOY.md) so they never enter Terraform state; the Redis URL and CA are written here from the instance.

resource "google_secret_manager_secret" "gateway" {
  for_each  = local.secrets
  secret_id = each.value.id

  # Replicas stay in Korea with the rest of the deployment.
  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.required]
}

resource "google_secret_manager_secret_version" "redis_url" {
  secret      = google_secret_manager_secret.gateway["redis_url"].id
  secret_data = local.redis_url
}

resource "google_secret_manager_secret_version" "redis_ca" {
  secret      = google_secret_manager_secret.gateway["redis_ca"].id
  secret_data = join("\n", [for c in google_redis_instance.cache.server_ca_certs : c.cert])
}
