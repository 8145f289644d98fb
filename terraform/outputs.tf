output "function_urls" {
  description = "URL of every function, by entry point."
  value       = { for k, f in google_cloudfunctions2_function.gateway : k => f.url }
}

output "public_urls" {
  description = "URLs the frontends call."
  value       = { for k, f in google_cloudfunctions2_function.gateway : k => f.url if local.functions[k].public }
}

output "drain_url" {
  description = "Where Cloud Tasks pushes drain tasks (TASK_TARGET_URL)."
  value       = local.function_urls["drain"]
}

output "queue_names" {
  description = "Cloud Tasks queue per call class."
  value       = { for c, q in google_cloud_tasks_queue.call_class : c => q.name }
}

output "scheduler_jobs" {
  description = "Cloud Scheduler jobs and their cron (Asia/Seoul)."
  value       = { for k, j in google_cloud_scheduler_job.gateway : k => j.schedule }
}

output "redis_host" {
  description = "Private address of Memorystore (AUTH and TLS required; the full URL is in Secret Manager)."
  value       = "${google_redis_instance.cache.host}:${google_redis_instance.cache.port}"
}

output "secret_ids" {
  description = "Secret Manager secrets; set the KIS, API-key and webhook values with gcloud (DEPLOY.md)."
  value       = { for k, s in google_secret_manager_secret.gateway : k => s.secret_id }
}

output "source_bucket" {
  description = "Bucket of source bundles (objects kisgw-<hash>.zip; set bundle_object to one to roll back)."
  value       = google_storage_bucket.source.name
}

output "deployed_bundle" {
  description = "Bundle object the functions are built from."
  value       = local.bundle_object
}
