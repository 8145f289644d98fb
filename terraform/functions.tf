# Cloud Functions (2nd gen), one per entry point of functions/main.py, all from the same source bundle.
#
# Concurrency: quote-type requests mostly wait (Redis, pending symbols up to request_deadline_s), so an
# instance with 1 vCPU serves var.waiting_concurrency (80) of them at once; THREADS sizes the gunicorn gthread
# pool of functions-framework to match (its default, 4 x CPU, would cap an instance at 4 waiters).
# Memory (var.function_memory) is sized from the benchmark's measured peak RSS (164 MiB per worker) with headroom.
#
# Warm instances: min_instance_count starts at off_hours_min_instances; the Cloud Scheduler jobs in
# scheduler.tf raise it to market_hours_min_instances before the open and lower it after the close, so
# Terraform ignores later changes of that one field.

locals {
  # A drain is CPU-light but holds a thread while it waits for limiter grants and KIS answers.
  drain_concurrency = 10
  function_concurrency = { for k, f in local.functions : k => (
    f.waiting ? var.waiting_concurrency : (k == "drain" ? local.drain_concurrency : 1)
  ) }
  # Enough drain capacity for every queue's max_concurrent_dispatches at once, plus one instance of slack,
  # so Cloud Tasks is never refused for lack of instances.
  drain_max_instances = max(2, ceil(sum([for q in values(var.call_queues) : q.max_concurrent_dispatches]) / local.drain_concurrency) + 1)
}

resource "google_cloudfunctions2_function" "gateway" {
  for_each    = local.functions
  name        = local.function_names[each.key]
  location    = var.region
  description = "KIS gateway entry point ${each.key}"

  build_config {
    runtime         = var.python_runtime
    entry_point     = each.key
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = local.bundle_object
      }
    }
  }

  service_config {
    #checkov:skip=CKV_GCP_124:Public endpoints serve browser frontends directly (ALLOW_ALL + API keys checked in the gateway); internal ones are ALLOW_INTERNAL_ONLY.
    service_account_email            = google_service_account.function[each.key].email
    ingress_settings                 = each.value.public ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    available_cpu                    = var.function_cpu
    available_memory                 = var.function_memory
    max_instance_request_concurrency = local.function_concurrency[each.key]
    min_instance_count               = contains(var.warm_functions, each.key) ? var.off_hours_min_instances : 0
    max_instance_count               = each.key == "drain" ? local.drain_max_instances : var.max_instances
    timeout_seconds                  = each.value.timeout > 0 ? each.value.timeout : max(var.task_dispatch_deadline_s, var.drain_deadline_s + 10)

    vpc_connector                 = google_vpc_access_connector.gateway.id
    vpc_connector_egress_settings = "PRIVATE_RANGES_ONLY"

    environment_variables = merge(var.gateway_env, local.deploy_env, local.cors_env, local.function_env[each.key], {
      THREADS = tostring(local.function_concurrency[each.key])
      WORKERS = "1"
    })

    dynamic "secret_environment_variables" {
      for_each = local.secret_env_bindings[each.key]
      content {
        key        = secret_environment_variables.value.env
        project_id = var.project_id
        secret     = secret_environment_variables.value.id
        # latest: a rotated value reaches instances as they start, without a redeploy.
        version = "latest"
      }
    }

    secret_volumes {
      mount_path = local.redis_ca_dir
      project_id = var.project_id
      secret     = local.secrets.redis_ca.id
      versions {
        version = "latest"
        path    = local.redis_ca_file
      }
    }
  }

  lifecycle {
    ignore_changes = [service_config[0].min_instance_count]
  }

  depends_on = [
    google_secret_manager_secret_iam_member.function_reads,
    google_secret_manager_secret_version.redis_url,
    google_secret_manager_secret_version.redis_ca,
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_reads_source,
  ]
}
