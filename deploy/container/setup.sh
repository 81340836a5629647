#!/bin/sh
# bentofile.yaml's docker.setup_script: runs as root in the image build, after the Python packages are installed.
# The state folder (prediction log, outcome store, drift and quality state) belongs to the non-root user the
# server runs as, so a fresh volume mounted there starts with the right owner (Docker copies it; Kubernetes uses
# the pod's fsGroup, see deploy/k8s/deployment.yaml).
set -eu
install -d -o bentoml -g bentoml -m 0750 "${STATE_DIR:?STATE_DIR is set by bentofile.yaml envs}"
