"""Deployment: the container image of the bento, how it runs here and elsewhere, and the Kubernetes manifests."""
