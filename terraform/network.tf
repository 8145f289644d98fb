# Private network: Memorystore is reachable only through private services access, and the functions reach
# it through a Serverless VPC Access connector. KIS is called over the internet (egress PRIVATE_RANGES_ONLY).

resource "google_compute_network" "gateway" {
  name                    = "${var.name_prefix}-vpc"
  auto_create_subnetworks = false
  depends_on              = [google_project_service.required]
}

resource "google_compute_global_address" "private_services" {
  name          = "${var.name_prefix}-psa-range"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 24
  network       = google_compute_network.gateway.id
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.gateway.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
}

resource "google_vpc_access_connector" "gateway" {
  name          = "${var.name_prefix}-connector"
  region        = var.region
  network       = google_compute_network.gateway.name
  ip_cidr_range = var.connector_cidr
  machine_type  = "e2-micro"
  min_instances = 2
  max_instances = 3
  depends_on    = [google_project_service.required]
}

# Nothing on the internet connects into this network; the connector's own rules (priority 1000, created by
# Google) still let it reach Memorystore.
resource "google_compute_firewall" "deny_ingress" {
  name      = "${var.name_prefix}-deny-ingress"
  network   = google_compute_network.gateway.name
  direction = "INGRESS"
  priority  = 65534

  deny {
    protocol = "all"
  }
  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}
