"""One module per target: docker (Docker hosts), kubernetes (kind or any cluster by context), gke."""
