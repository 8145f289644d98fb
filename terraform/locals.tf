locals {
  # One Cloud Function per entry point of functions/main.py, from the deployment description
  # (shared/deployment.py, written into generated.auto.tfvars.json by scripts/gen_tfvars.py):
  #   public          : reachable from the internet (frontends); the function checks API keys itself.
  #   kis             : calls KIS.
  #   secrets         : Secret Manager secrets it may access (env bindings below; the token through the API).
  #   token           : the KIS token secret: none, read, or write (the one writer adds/lists/disables versions).
  #   firestore       : "rw" (breaker transitions, order idempotency), "ro" (breaker state, API keys) or "".
  #   enqueue         : call-class queues it creates drain tasks in.
  #   request_refresh : may ask the refresh function for a new token through the refresh queue.
  #   invokers        : identities whose ID tokens it accepts (tasks, scheduler, scraper).
  #   waiting         : requests wait on I/O (Redis, pending symbols), so one instance serves many at once.
  #   timeout         : seconds; 0 means "the drain's dispatch deadline".
  #   asgi            : served by functions-framework in ASGI mode (FUNCTION_USE_ASGI).
  functions = var.functions

  # Cloud Run service names allow no underscores.
  function_names = { for k, _ in local.functions : k => "${var.name_prefix}-${replace(k, "_", "-")}" }
  # A gen2 function answers at this URL; known before the function exists, so functions can name the drain
  # target without a dependency cycle (they are all one for_each resource).
  function_urls = { for k, n in local.function_names : k => "https://${var.region}-${var.project_id}.cloudfunctions.net/${n}" }

  # Queue ids are chosen by the gateway (shared/cloud/tasks.py), which enqueues into them by name.
  queue_names = { for c, q in var.call_queues : c => q.queue_id }

  # Secret Manager secrets. `env` is the variable a function reads it into (secret_environment_variables);
  # the token is read and written through the API (TOKEN_STORE) and the Redis CA is mounted as a file.
  secrets = {
    kis_app_key    = { id = "${var.name_prefix}-kis-app-key", env = "KIS_APP_KEY" }
    kis_app_secret = { id = "${var.name_prefix}-kis-app-secret", env = "KIS_APP_SECRET" }
    kis_account_no = { id = "${var.name_prefix}-kis-account-no", env = "KIS_ACCOUNT_NO" }
    api_keys       = { id = "${var.name_prefix}-api-key-pepper", env = "GATEWAY_API_KEY_PEPPER" }
    alert_webhook  = { id = "${var.name_prefix}-alert-webhook-url", env = "ALERT_WEBHOOK_URL" }
    redis_url      = { id = "${var.name_prefix}-redis-url", env = "REDIS_URL" }
    kis_token      = { id = "${var.name_prefix}-kis-token", env = "" }
    redis_ca       = { id = "${var.name_prefix}-redis-ca", env = "" }
  }

  # Which secrets each function may read: exactly the description's list (least privilege).
  function_secrets = { for k, f in local.functions : k => f.secrets }

  secret_env_bindings = { for k, names in local.function_secrets : k => [
    for s in names : local.secrets[s] if local.secrets[s].env != ""
  ] }

  redis_ca_dir  = "/etc/secrets/redis-ca"
  redis_ca_file = "server-ca.pem"

  # Memorystore's server certificate names no hostname a client dials by IP: verify the chain against the
  # instance's CA and skip the hostname match (redis-py reads both options from the URL query).
  redis_url = format("rediss://:%s@%s:%d/0?ssl_ca_certs=%s/%s&ssl_check_hostname=false",
    google_redis_instance.cache.auth_string, google_redis_instance.cache.host, google_redis_instance.cache.port,
  local.redis_ca_dir, local.redis_ca_file)

  # Settings set by the deployment itself; the rest of the runtime settings come from var.gateway_env.
  deploy_env = {
    GATEWAY_MODE              = "cloud"
    GCP_PROJECT               = var.project_id
    GCP_REGION                = var.region
    TASK_QUEUE                = "cloudtasks://"
    TASK_TARGET_URL           = local.function_urls["drain"]
    TASK_OIDC_SERVICE_ACCOUNT = google_service_account.tasks_invoker.email
    TOKEN_REFRESH_URL         = local.function_urls["refresh_token"]
    BREAKER_STORE             = "firestore://breakers"
    IDEMPOTENCY_STORE         = "firestore://order_idempotency"
    TOKEN_STORE               = "secretmanager://${local.secrets.kis_token.id}"
    LOG_EXECUTION_ID          = "true"
    # One app key per deployment: its limiter, token lock and status keys are named by this label, so
    # functions that do not hold the key (health, stats) read the same keys.
    KIS_KEY_ID = var.name_prefix
  }
  # Who may present an ID token to a function: the identities Terraform lets invoke it.
  invoker_emails = {
    tasks     = [google_service_account.tasks_invoker.email]
    scheduler = [google_service_account.scheduler_invoker.email]
    scraper   = [for m in var.metrics_invokers : trimprefix(m, "serviceAccount:") if startswith(m, "serviceAccount:")]
  }
  # Per function: its own name (the composition root builds only what its identity may use), the audience
  # its ID tokens carry (its URL, as Cloud Tasks and Cloud Scheduler send it) and the accounts it accepts.
  function_env = { for k, f in local.functions : k => merge(f.env, {
    GATEWAY_FUNCTION        = k
    ID_TOKEN_AUDIENCE       = local.function_urls[k]
    ID_TOKEN_ALLOWED_EMAILS = join(",", flatten([for i in f.invokers : local.invoker_emails[i]]))
    }, { for name, value in { FUNCTION_USE_ASGI = "true" } : name => value if f.asgi })
  }
  cors_env = length(var.cors_origins) > 0 ? { CORS_ORIGINS = join(",", var.cors_origins) } : {}
}
