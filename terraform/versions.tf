terraform {
  # 1.9+: variable validations may refer to other variables (gateway_budget <= kis_limit).
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
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
