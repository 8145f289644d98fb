# Log-based metrics and alert policies. The gateway logs each alert once per minute at most, with the event
# name in the structured field `alert` (shared/observability/alerts.py): breaker_open, token_refresh_failed,
# rate_limit_errors (sustained EGW00201/EGW00215 answers). The text match covers plain-text log lines.

locals {
  alert_events = {
    breaker_open = {
      title     = "KIS circuit breaker open"
      threshold = 0
      duration  = "0s"
      doc       = "KIS calls are failing; the gateway serves last-known data marked stale. Check KIS status and /health."
    }
    token_refresh_failed = {
      title     = "KIS token refresh failed"
      threshold = 0
      duration  = "0s"
      doc       = "The access token could not be refreshed; KIS calls stop when it expires. Check the app key secrets and the refresh_token function logs."
    }
    rate_limit_errors = {
      title     = "Sustained KIS rate-limit errors"
      threshold = var.rate_limit_alert_threshold - 1
      duration  = "300s"
      doc       = "KIS answers EGW00201/EGW00215: another client shares the app key or the budget is too high. Lower GATEWAY_BUDGET and regenerate tfvars."
    }
  }
}

resource "google_logging_metric" "alert_event" {
  for_each    = local.alert_events
  name        = "${var.name_prefix}/${each.key}"
  description = each.value.title
  filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=~\"^${var.name_prefix}-\"",
    "(jsonPayload.alert=\"${each.key}\" OR jsonPayload.message:\"alert ${each.key}\" OR textPayload:\"alert ${each.key}\")",
  ])

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

resource "google_monitoring_alert_policy" "alert_event" {
  for_each              = local.alert_events
  display_name          = "${var.name_prefix}: ${each.value.title}"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  severity              = each.key == "rate_limit_errors" ? "WARNING" : "CRITICAL"

  conditions {
    display_name = each.value.title
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.alert_event[each.key].name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = each.value.duration

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    content   = each.value.doc
    mime_type = "text/markdown"
  }
}
