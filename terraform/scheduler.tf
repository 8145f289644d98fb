# Cloud Scheduler jobs from var.schedules: the same definitions (shared/schedules.py) the local stack's
# scheduler runs, in Asia/Seoul. Each job POSTs to its function with an OIDC token of scheduler_invoker.

resource "google_cloud_scheduler_job" "gateway" {
  for_each         = var.schedules
  name             = "${var.name_prefix}-${each.key}"
  region           = var.region
  description      = each.value.description
  schedule         = each.value.cron
  time_zone        = each.value.time_zone
  attempt_deadline = "320s"

  retry_config {
    retry_count          = 2
    min_backoff_duration = "10s"
    max_backoff_duration = "60s"
  }

  http_target {
    http_method = "POST"
    uri         = "${local.function_urls[each.value.function]}${each.value.target}"
    headers     = { "Content-Type" = "application/json" }
    # Cron cannot express KRX holidays; the handler checks the calendar when trading_days_only is set.
    body = base64encode(jsonencode({ job = each.key, trading_days_only = each.value.trading_days_only }))

    oidc_token {
      service_account_email = google_service_account.scheduler_invoker.email
      # The audience each function checks (its ID_TOKEN_AUDIENCE), as Cloud Tasks uses for the drain.
      audience = local.function_urls[each.value.function]
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.scheduled_from_scheduler]
}

# Market-hours warm instances: before the open, raise min instances of each warm function; after the close,
# lower them again. The jobs PATCH the function through the Cloud Functions API (OAuth token of the scaler,
# which may update only those functions), which rolls a new revision with the new minimum.
locals {
  warm_phases = {
    warm-up   = { cron = var.warm_up_cron, min_instances = var.market_hours_min_instances }
    cool-down = { cron = var.cool_down_cron, min_instances = var.off_hours_min_instances }
  }
  warm_jobs = merge([for fn in var.warm_functions : {
    for phase, p in local.warm_phases : "${phase}-${replace(fn, "_", "-")}" => merge(p, { fn = fn, phase = phase })
  }]...)
}

resource "google_cloud_scheduler_job" "warm_instances" {
  for_each         = local.warm_jobs
  name             = "${var.name_prefix}-${each.key}"
  region           = var.region
  description      = "Set min instances of ${each.value.fn} to ${each.value.min_instances} (${each.value.phase})"
  schedule         = each.value.cron
  time_zone        = "Asia/Seoul"
  attempt_deadline = "60s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "30s"
  }

  http_target {
    http_method = "PATCH"
    uri         = "https://cloudfunctions.googleapis.com/v2/${google_cloudfunctions2_function.gateway[each.value.fn].id}?updateMask=serviceConfig.minInstanceCount"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(jsonencode({ serviceConfig = { minInstanceCount = each.value.min_instances } }))

    oauth_token {
      service_account_email = google_service_account.scaler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [
    google_cloudfunctions2_function_iam_member.scaler,
    google_service_account_iam_member.scaler_act_as_runtime,
  ]
}
