terraform {
  # 1.9+: variable validations may refer to other variables (gateway_budget <= kis_limit).
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # Provider 6.x from 6.50: the version whose schema tests/terraform/test_provider_schema.py checks
      # every google_* block against (prebuilt CDKTF bindings 16.x).
      version = "~> 6.50"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = {
    app        = "kis-gateway"
    managed-by = "terraform"
  }
}
