# One Cloud Tasks queue per call class. Rate, concurrency and retry come from var.call_queues, generated from
# shared/config.py by scripts/gen_tfvars.py. The queue only smooths load: the Redis limiter in front of every
# KIS call is what guarantees the per-second KIS limit.

resource "google_cloud_tasks_queue" "call_class" {
  for_each = var.call_queues
  name     = local.queue_names[each.key]
  location = var.region

  rate_limits {
    max_dispatches_per_second = each.value.max_dispatches_per_second
    max_concurrent_dispatches = each.value.max_concurrent_dispatches
  }

  retry_config {
    max_attempts  = each.value.max_attempts
    min_backoff   = "${each.value.min_backoff_s}s"
    max_backoff   = "${each.value.max_backoff_s}s"
    max_doublings = each.value.max_doublings
  }

  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  depends_on = [google_project_service.required]
}

# The refresh function's queue: readers (drain, orders, balance, legacy_api) that find the KIS token missing or
# rejected enqueue one task per minute (named by the minute, so the fleet asks once); one dispatch at a time.
resource "google_cloud_tasks_queue" "token_refresh" {
  name     = var.refresh_queue.queue_id
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.refresh_queue.max_dispatches_per_second
    max_concurrent_dispatches = var.refresh_queue.max_concurrent_dispatches
  }

  retry_config {
    max_attempts  = var.refresh_queue.max_attempts
    min_backoff   = "${var.refresh_queue.min_backoff_s}s"
    max_backoff   = "${var.refresh_queue.max_backoff_s}s"
    max_doublings = var.refresh_queue.max_doublings
  }

  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  depends_on = [google_project_service.required]
}
