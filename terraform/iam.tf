# One service account per function, granted only what its catalog entry in locals.tf needs; plus an invoker
# identity for Cloud Tasks, one for Cloud Scheduler, one that scales warm functions, and one for builds.

resource "google_service_account" "function" {
  for_each     = local.functions
  account_id   = "${var.name_prefix}-fn-${replace(each.key, "_", "-")}"
  display_name = "KIS gateway function ${each.key}"
}

resource "google_service_account" "tasks_invoker" {
  account_id   = "${var.name_prefix}-tasks-invoker"
  display_name = "Cloud Tasks OIDC identity calling the drain function"
}

resource "google_service_account" "scheduler_invoker" {
  account_id   = "${var.name_prefix}-sched-invoker"
  display_name = "Cloud Scheduler OIDC identity calling scheduled functions"
}

resource "google_service_account" "scaler" {
  account_id   = "${var.name_prefix}-scaler"
  display_name = "Raises and lowers minimum instances of warm functions around market hours"
}

resource "google_service_account" "build" {
  account_id   = "${var.name_prefix}-build"
  display_name = "Builds the functions' containers from the source bundle"
}

# ---- runtime: logs, Firestore, secrets, queues ------------------------------------------------------------

resource "google_project_iam_member" "function_logs" {
  for_each = local.functions
  project  = var.project_id
  role     = "roles/logging.logWriter"
  member   = google_service_account.function[each.key].member
}

# Firestore IAM is project-wide; read-only functions get the viewer role.
resource "google_project_iam_member" "function_firestore" {
  for_each = { for k, f in local.functions : k => f if f.firestore != "" }
  project  = var.project_id
  role     = each.value.firestore == "rw" ? "roles/datastore.user" : "roles/datastore.viewer"
  member   = google_service_account.function[each.key].member
}

resource "google_secret_manager_secret_iam_member" "function_reads" {
  for_each = merge([for fn, names in local.function_secrets : {
    for s in names : "${fn}/${s}" => { fn = fn, secret = s }
  }]...)
  secret_id = google_secret_manager_secret.gateway[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function[each.value.fn].member
}

# The one token writer (refresh_token) adds a version, lists the enabled ones and disables the older ones;
# nothing else (no destroy, no access to other secrets' versions).
resource "google_project_iam_custom_role" "token_writer" {
  role_id     = "${replace(var.name_prefix, "-", "_")}_token_writer"
  title       = "KIS gateway token writer"
  description = "Add, list and disable versions of the KIS token secret"
  permissions = [
    "secretmanager.versions.add",
    "secretmanager.versions.list",
    "secretmanager.versions.get",
    "secretmanager.versions.disable",
  ]
}

resource "google_secret_manager_secret_iam_member" "token_writer" {
  for_each  = { for k, f in local.functions : k => f if f.token == "write" }
  secret_id = google_secret_manager_secret.gateway["kis_token"].secret_id
  role      = google_project_iam_custom_role.token_writer.id
  member    = google_service_account.function[each.key].member
}

resource "google_cloud_tasks_queue_iam_member" "enqueuers" {
  for_each = merge([for fn, f in local.functions : {
    for c in f.enqueue : "${fn}/${c}" => { fn = fn, call_class = c }
  }]...)
  name     = google_cloud_tasks_queue.call_class[each.value.call_class].name
  location = var.region
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.function[each.value.fn].member
}

# Readers that find the token missing or rejected ask the refresh function through its queue.
resource "google_cloud_tasks_queue_iam_member" "refresh_requesters" {
  for_each = { for k, f in local.functions : k => f if f.request_refresh }
  name     = google_cloud_tasks_queue.token_refresh.name
  location = var.region
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.function[each.key].member
}

# Creating a task with an OIDC token for tasks_invoker requires acting as it.
resource "google_service_account_iam_member" "enqueuers_act_as_tasks_invoker" {
  for_each           = toset([for fn, f in local.functions : fn if length(f.enqueue) > 0 || f.request_refresh])
  service_account_id = google_service_account.tasks_invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.function[each.key].member
}

# ---- who may call which function ---------------------------------------------------------------------------

# Public endpoints answer anyone on the network; the gateway itself checks API keys and rate per key.
resource "google_cloud_run_v2_service_iam_member" "public" {
  for_each = { for k, f in local.functions : k => f if f.public }
  name     = google_cloudfunctions2_function.gateway[each.key].name
  location = var.region
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "drain_from_tasks" {
  name     = google_cloudfunctions2_function.gateway["drain"].name
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.tasks_invoker.member
}

resource "google_cloud_run_v2_service_iam_member" "refresh_from_tasks" {
  name     = google_cloudfunctions2_function.gateway["refresh_token"].name
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.tasks_invoker.member
}

resource "google_cloud_run_v2_service_iam_member" "scheduled_from_scheduler" {
  for_each = toset([for s in values(var.schedules) : s.function])
  name     = google_cloudfunctions2_function.gateway[each.key].name
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler_invoker.member
}

resource "google_cloud_run_v2_service_iam_member" "metrics_scrapers" {
  for_each = toset(var.metrics_invokers)
  name     = google_cloudfunctions2_function.gateway["metrics"].name
  location = var.region
  role     = "roles/run.invoker"
  member   = each.value
}

# ---- scaler: patches min instances of the warm functions only -------------------------------------------

resource "google_cloudfunctions2_function_iam_member" "scaler" {
  for_each       = toset(var.warm_functions)
  cloud_function = google_cloudfunctions2_function.gateway[each.key].name
  location       = var.region
  role           = "roles/cloudfunctions.developer"
  member         = google_service_account.scaler.member
}

# Updating a function requires acting as its runtime service account.
resource "google_service_account_iam_member" "scaler_act_as_runtime" {
  for_each           = toset(var.warm_functions)
  service_account_id = google_service_account.function[each.key].name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.scaler.member
}

# ---- build ---------------------------------------------------------------------------------------------------

resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])
  project  = var.project_id
  role     = each.value
  member   = google_service_account.build.member
}

resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}
