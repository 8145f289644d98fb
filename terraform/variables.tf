# Deployment variables. The numbers that must match the gateway's runtime (queue rates, retry settings,
# schedules, TTLs, batch size, limit profile, budget) come from generated.auto.tfvars.json, written by
# scripts/gen_tfvars.py from shared/config.py; do not edit them here or by hand.

variable "project_id" {
  description = "Google Cloud project id that hosts the gateway."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6-30 lowercase letters, digits or hyphens."
  }
}

variable "region" {
  description = "Region of every regional resource. asia-northeast3 (Seoul) sits next to the KIS servers."
  type        = string
  default     = "asia-northeast3"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a Google Cloud region name such as asia-northeast3."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (functions, queues, secrets, service accounts)."
  type        = string
  default     = "kisgw"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,11}$", var.name_prefix))
    error_message = "name_prefix must be 2-12 characters: a lowercase letter, then lowercase letters, digits or hyphens."
  }
}

# ---- generated from shared/config.py (scripts/gen_tfvars.py) ------------------------------------------

variable "kis_env" {
  description = "KIS environment: real or paper (paper keys have no multi-quote and a lower limit)."
  type        = string

  validation {
    condition     = contains(["real", "paper"], var.kis_env)
    error_message = "kis_env must be real or paper."
  }
}

variable "kis_limit_profile" {
  description = "KIS limit profile: kis-2026-04 (18/s real, 1/s paper) or kis-legacy (20/2)."
  type        = string

  validation {
    condition     = contains(["kis-2026-04", "kis-legacy"], var.kis_limit_profile)
    error_message = "kis_limit_profile must be kis-2026-04 or kis-legacy."
  }
}

variable "kis_limit" {
  description = "KIS calls per second per app key for kis_env under kis_limit_profile (generated)."
  type        = number

  validation {
    condition     = var.kis_limit >= 1 && var.kis_limit <= 100
    error_message = "kis_limit must be between 1 and 100 calls per second."
  }
}

variable "gateway_budget" {
  description = "Calls per second the gateway allows itself per app key, across every instance and queue."
  type        = number

  validation {
    condition     = var.gateway_budget >= 1 && var.gateway_budget <= var.kis_limit
    error_message = "gateway_budget must be at least 1 and never above kis_limit."
  }
}

variable "batch_size" {
  description = "Symbols per multi-quote KIS call (1 on paper keys; KIS max 30)."
  type        = number

  validation {
    condition     = var.batch_size >= 1 && var.batch_size <= 30
    error_message = "batch_size must be between 1 and 30 (KIS multi-quote maximum)."
  }
}

variable "request_deadline_s" {
  description = "Longest a quote request waits for pending symbols before answering (seconds)."
  type        = number

  validation {
    condition     = var.request_deadline_s > 0 && var.request_deadline_s <= 30
    error_message = "request_deadline_s must be in (0, 30]."
  }
}

variable "drain_deadline_s" {
  description = "Longest one drain task keeps claiming and fetching (seconds)."
  type        = number

  validation {
    condition     = var.drain_deadline_s >= 1 && var.drain_deadline_s <= 1800
    error_message = "drain_deadline_s must be between 1 and 1800."
  }
}

variable "task_dispatch_deadline_s" {
  description = "Cloud Tasks dispatch deadline of a drain task (seconds); the drain function's timeout."
  type        = number

  validation {
    condition     = var.task_dispatch_deadline_s >= 15 && var.task_dispatch_deadline_s <= 1800
    error_message = "task_dispatch_deadline_s must be between 15 and 1800 (Cloud Tasks HTTP limits)."
  }
}

variable "call_queues" {
  description = "Cloud Tasks queue per call class (orders, quotes, reference): dispatch rate, concurrency, retry."
  type = map(object({
    queue_id                  = string
    max_dispatches_per_second = number
    max_concurrent_dispatches = number
    max_attempts              = number
    min_backoff_s             = number
    max_backoff_s             = number
    max_doublings             = number
  }))

  validation {
    condition     = length(setsubtract(["orders", "quotes", "reference"], keys(var.call_queues))) == 0
    error_message = "call_queues must define orders, quotes and reference."
  }

  validation {
    condition = alltrue([for q in values(var.call_queues) :
      q.max_dispatches_per_second > 0 && q.max_dispatches_per_second <= 500 &&
      q.max_concurrent_dispatches >= 1 && q.max_concurrent_dispatches <= 5000
    ])
    error_message = "Each queue needs 0 < max_dispatches_per_second <= 500 and 1 <= max_concurrent_dispatches <= 5000."
  }

  validation {
    condition = alltrue([for q in values(var.call_queues) :
      q.max_attempts >= 1 && q.min_backoff_s >= 0 && q.max_backoff_s >= q.min_backoff_s && q.max_doublings >= 0 &&
      can(regex("^[A-Za-z0-9-]{1,100}$", q.queue_id))
    ])
    error_message = "Each queue needs max_attempts >= 1, 0 <= min_backoff_s <= max_backoff_s, max_doublings >= 0 and a queue_id of letters, digits and hyphens."
  }
}

variable "refresh_queue" {
  description = "The refresh function's Cloud Tasks queue (token refresh requests of readers)."
  type = object({
    queue_id                  = string
    max_dispatches_per_second = number
    max_concurrent_dispatches = number
    max_attempts              = number
    min_backoff_s             = number
    max_backoff_s             = number
    max_doublings             = number
  })
}

variable "functions" {
  description = "The deployment description (shared/deployment.py): per function its ingress, secrets, token access, Firestore access, queues, invokers, env, timeout and ASGI flag."
  type = map(object({
    public          = bool
    kis             = bool
    secrets         = list(string)
    token           = string
    firestore       = string
    enqueue         = list(string)
    request_refresh = bool
    invokers        = list(string)
    waiting         = bool
    timeout         = number
    asgi            = bool
    env             = map(string)
  }))

  validation {
    condition = alltrue([for f in values(var.functions) :
      contains(["none", "read", "write"], f.token) && contains(["", "ro", "rw"], f.firestore) &&
      alltrue([for i in f.invokers : contains(["tasks", "scheduler", "scraper"], i)])
    ])
    error_message = "token is none/read/write, firestore is \"\"/ro/rw, invokers are tasks, scheduler or scraper."
  }

  validation {
    condition     = length([for f in values(var.functions) : f if f.token == "write"]) == 1
    error_message = "Exactly one function writes the KIS token."
  }
}

variable "schedules" {
  description = "Cloud Scheduler jobs, the same definitions the local stack's scheduler uses (shared/schedules.py)."
  type = map(object({
    cron              = string
    time_zone         = string
    target            = string
    function          = string
    description       = string
    trading_days_only = bool
  }))

  validation {
    condition     = alltrue([for s in values(var.schedules) : s.time_zone == "Asia/Seoul" && startswith(s.target, "/")])
    error_message = "Every schedule runs in Asia/Seoul and targets a path starting with /."
  }
}

variable "gateway_env" {
  description = "Non-secret runtime settings (TTLs, batch size, budget shares, retry, breaker) given to every function."
  type        = map(string)

  validation {
    condition = length(setintersection(keys(var.gateway_env), [
      "KIS_APP_KEY", "KIS_APP_SECRET", "KIS_ACCOUNT_NO", "GATEWAY_DEV_API_KEY", "ALERT_WEBHOOK_URL",
      "GATEWAY_API_KEY_PEPPER", "REDIS_URL",
    ])) == 0
    error_message = "gateway_env must not carry secrets; they are read from Secret Manager."
  }
}

# ---- deployment choices -----------------------------------------------------------------------------------

variable "bundle_path" {
  description = "Source zip built by scripts/build_bundle.py (dist/kisgw-<hash>.zip). Ignored when bundle_object is set."
  type        = string
  default     = ""
}

variable "bundle_object" {
  description = "Name of an already uploaded bundle object to deploy instead of bundle_path: set it to roll back."
  type        = string
  default     = ""

  validation {
    condition     = var.bundle_object == "" || can(regex("^kisgw-[0-9a-f]{12}\\.zip$", var.bundle_object))
    error_message = "bundle_object must be empty or a bundle name like kisgw-0123456789ab.zip."
  }
}

variable "python_runtime" {
  description = "Cloud Functions Python runtime."
  type        = string
  default     = "python311"

  validation {
    condition     = can(regex("^python3(1[1-3])$", var.python_runtime))
    error_message = "python_runtime must be python311, python312 or python313."
  }
}

variable "waiting_concurrency" {
  description = "Requests one instance serves at once for the waiting (I/O-bound) endpoints; needs at least 1 vCPU."
  type        = number
  default     = 80

  validation {
    condition     = var.waiting_concurrency >= 1 && var.waiting_concurrency <= 1000
    error_message = "waiting_concurrency must be between 1 and 1000 (Cloud Run maximum)."
  }
}

variable "function_cpu" {
  description = "vCPUs per function instance; concurrency above 1 requires at least 1."
  type        = string
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4"], var.function_cpu)
    error_message = "function_cpu must be 1, 2 or 4."
  }
}

variable "function_memory" {
  description = "Memory per instance. `kisgw bench` measured a peak RSS of 164 MiB per function worker at 64 concurrent waiters (2026-11, 2 cores); 512Mi leaves room for 80 concurrent requests and Memorystore TLS buffers."
  type        = string
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.function_memory))
    error_message = "function_memory must be a quantity like 512Mi or 1Gi."
  }
}

variable "max_instances" {
  description = "Upper bound of instances per function (the KIS budget, not instances, bounds KIS calls)."
  type        = number
  default     = 20

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000
    error_message = "max_instances must be between 1 and 1000."
  }
}

variable "warm_functions" {
  description = "Functions kept warm during market hours (minimum instances raised by the warm-up scheduler job)."
  type        = list(string)
  default     = ["quotes", "index_quotes", "legacy_api", "drain"]
}

variable "market_hours_min_instances" {
  description = "Minimum instances of each warm function between warm_up_cron and cool_down_cron (KST)."
  type        = number
  default     = 1

  validation {
    condition     = var.market_hours_min_instances >= 0 && var.market_hours_min_instances <= 100
    error_message = "market_hours_min_instances must be between 0 and 100."
  }
}

variable "off_hours_min_instances" {
  description = "Minimum instances of each warm function outside market hours."
  type        = number
  default     = 0

  validation {
    condition     = var.off_hours_min_instances >= 0 && var.off_hours_min_instances <= 100
    error_message = "off_hours_min_instances must be between 0 and 100."
  }
}

variable "warm_up_cron" {
  description = "When warm functions get market_hours_min_instances (Asia/Seoul); an hour before the 09:00 open."
  type        = string
  default     = "0 8 * * 1-5"
}

variable "cool_down_cron" {
  description = "When warm functions drop to off_hours_min_instances (Asia/Seoul); after the 15:30 close."
  type        = string
  default     = "0 16 * * 1-5"
}

variable "redis_tier" {
  description = "Memorystore tier: STANDARD_HA (replica, automatic failover) or BASIC."
  type        = string
  default     = "STANDARD_HA"

  validation {
    condition     = contains(["BASIC", "STANDARD_HA"], var.redis_tier)
    error_message = "redis_tier must be BASIC or STANDARD_HA."
  }
}

variable "redis_memory_gb" {
  description = "Memorystore capacity in GB."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_memory_gb >= 1 && var.redis_memory_gb <= 300
    error_message = "redis_memory_gb must be between 1 and 300."
  }
}

variable "connector_cidr" {
  description = "Unused /28 range of the Serverless VPC Access connector."
  type        = string
  default     = "10.8.0.0/28"

  validation {
    condition     = can(cidrhost(var.connector_cidr, 0)) && endswith(var.connector_cidr, "/28")
    error_message = "connector_cidr must be a /28 CIDR range."
  }
}

variable "cors_origins" {
  description = "Frontend origins allowed by CORS; overrides CORS_ORIGINS of gateway_env when not empty."
  type        = list(string)
  default     = []
}

variable "metrics_invokers" {
  description = "IAM members (e.g. a Prometheus scraper's service account) allowed to call the internal metrics function."
  type        = list(string)
  default     = []
}

variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channel ids (e.g. a Slack channel created in the console) for the alert policies."
  type        = list(string)
  default     = []
}

variable "rate_limit_alert_threshold" {
  description = "Sustained rate-limit alerts (logged rate_limit_errors events) per 5 minutes that page."
  type        = number
  default     = 1

  validation {
    condition     = var.rate_limit_alert_threshold >= 1
    error_message = "rate_limit_alert_threshold must be at least 1."
  }
}
