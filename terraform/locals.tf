locals {
  # One Cloud Function per entry point of functions/main.py (tests/terraform checks both ways).
  #   public    : reachable from the internet (frontends); the function checks API keys itself.
  #   kis       : calls KIS (app key/secret, reads the token from Secret Manager).
  #   account   : needs the account number (orders, balance).
  #   api_keys  : authenticates callers with the gateway API keys.
  #   firestore : "rw" (breaker transitions, order idempotency), "ro" (reports breaker state) or "".
  #   enqueue   : call-class queues it creates drain tasks in.
  #   waiting   : requests wait on I/O (Redis, pending symbols), so one instance serves many at once.
  #   timeout   : seconds; 0 means "the drain's dispatch deadline".
  functions = {
    quotes        = { public = true, kis = true, account = false, api_keys = true, firestore = "rw", enqueue = ["quotes"], waiting = true, timeout = 60 }
    daily_prices  = { public = true, kis = true, account = false, api_keys = true, firestore = "rw", enqueue = ["reference"], waiting = true, timeout = 60 }
    symbol_info   = { public = true, kis = true, account = false, api_keys = true, firestore = "rw", enqueue = ["reference"], waiting = true, timeout = 60 }
    index_quotes  = { public = true, kis = true, account = false, api_keys = true, firestore = "rw", enqueue = ["quotes"], waiting = true, timeout = 60 }
    symbol_search = { public = true, kis = false, account = false, api_keys = true, firestore = "ro", enqueue = [], waiting = true, timeout = 30 }
    orders        = { public = true, kis = true, account = true, api_keys = true, firestore = "rw", enqueue = [], waiting = true, timeout = 60 }
    balance       = { public = true, kis = true, account = true, api_keys = true, firestore = "rw", enqueue = ["orders"], waiting = true, timeout = 60 }
    health        = { public = true, kis = false, account = false, api_keys = false, firestore = "ro", enqueue = [], waiting = true, timeout = 30 }
    stats         = { public = true, kis = false, account = false, api_keys = true, firestore = "ro", enqueue = [], waiting = true, timeout = 30 }
    metrics       = { public = false, kis = false, account = false, api_keys = false, firestore = "ro", enqueue = [], waiting = true, timeout = 30 }
    legacy_api    = { public = true, kis = true, account = false, api_keys = true, firestore = "rw", enqueue = ["quotes", "reference"], waiting = true, timeout = 60 }
    drain         = { public = false, kis = true, account = false, api_keys = false, firestore = "rw", enqueue = ["quotes", "reference", "orders"], waiting = false, timeout = 0 }
    refresh_token = { public = false, kis = true, account = false, api_keys = false, firestore = "", enqueue = [], waiting = false, timeout = 300 }
    preload       = { public = false, kis = true, account = false, api_keys = false, firestore = "rw", enqueue = ["reference"], waiting = false, timeout = 300 }
    openapi       = { public = true, kis = false, account = false, api_keys = false, firestore = "", enqueue = [], waiting = false, timeout = 30 }
    dashboard     = { public = true, kis = false, account = false, api_keys = false, firestore = "", enqueue = [], waiting = true, timeout = 30 }
  }

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

  # Which secrets each function may read: least privilege follows the catalog flags.
  function_secrets = { for k, f in local.functions : k => compact(concat(
    ["redis_url", "redis_ca"],
    f.kis ? ["kis_app_key", "kis_app_secret", "kis_token", "alert_webhook"] : [],
    f.account ? ["kis_account_no"] : [],
    f.api_keys ? ["api_keys"] : [],
  )) }

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
    BREAKER_STORE             = "firestore://breakers"
    IDEMPOTENCY_STORE         = "firestore://order_idempotency"
    TOKEN_STORE               = "secretmanager://${local.secrets.kis_token.id}"
    LOG_EXECUTION_ID          = "true"
  }
  cors_env = length(var.cors_origins) > 0 ? { CORS_ORIGINS = join(",", var.cors_origins) } : {}
}
