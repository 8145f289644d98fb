# Memorystore for Redis: cache, pending sets, limiter log, locks. AUTH and in-transit TLS are both on; the
# connection URL (with the AUTH string) and the server CA reach the functions only through Secret Manager.

resource "google_redis_instance" "cache" {
  name           = "${var.name_prefix}-redis"
  display_name   = "KIS gateway cache and limiter"
  tier           = var.redis_tier
  memory_size_gb = var.redis_memory_gb
  region         = var.region
  redis_version  = "REDIS_7_2"

  authorized_network      = google_compute_network.gateway.id
  connect_mode            = "PRIVATE_SERVICE_ACCESS"
  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"

  # Cache data is rebuilt from KIS, so no persistence. When memory fills, evict keys that carry a TTL (cache
  # entries) rather than fail writes of the limiter and pending sets.
  redis_configs = {
    maxmemory-policy = "volatile-lru"
  }

  maintenance_policy {
    weekly_maintenance_window {
      day = "SUNDAY"
      # 18:00 UTC = 03:00 KST Monday, far from market hours.
      start_time {
        hours   = 18
        minutes = 0
      }
    }
  }

  depends_on = [google_service_networking_connection.private_services]
}
